package activator_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

const stopTimeout = 500 * time.Millisecond

// TestKill kills running handlers: one that dies of SIGTERM, one that
// ignores it and needs SIGKILL after StopTimeout, and one that is stopped
// (SIGSTOP), which SIGCONT after the SIGTERM wakes to die of it.
func TestKill(t *testing.T) {
	h := start(t, activator.Config{StopTimeout: stopTimeout}, handlerSocket("hang", testhandler.ReadyHang),
		handlerSocket("trap", testhandler.TrapTerm), handlerSocket("stopped", testhandler.ReadyStop))

	for i, tc := range []struct {
		name, signal string
		min          time.Duration
	}{
		{"hang", "SIGTERM", 0},
		{"trap", "SIGKILL", stopTimeout},
		{"stopped", "SIGTERM", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, h.addr(t, tc.name))
			if got := readLine(t, c); got != "ready" {
				t.Fatalf("read %q", got)
			}
			id := h.rec.nthBegun(t, i+1)
			began := time.Now()
			if err := h.a.Kill(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took < tc.min {
				t.Errorf("Kill returned after %v, before StopTimeout", took)
			}
			h.rec.mu.Lock()
			row, ok := h.rec.finished[id]
			h.rec.mu.Unlock()
			if !ok {
				t.Fatal("Kill returned before the row was finished")
			}
			if row.State != socketd.ConnKilled || row.Signal != tc.signal || row.ExitCode != nil {
				t.Errorf("row %s, signal %q, exit %v; want killed by %s", row.State, row.Signal, row.ExitCode, tc.signal)
			}
			if out, err := io.ReadAll(c); err != nil || len(out) != 0 {
				t.Errorf("client read %q, %v; want end of file", out, err)
			}
			if err := h.a.Kill(context.Background(), id); socketd.ErrorCode(err) != socketd.CodeNotFound {
				t.Errorf("Kill of a finished connection: %v, want not found", err)
			}
		})
	}
	if err := h.a.Kill(context.Background(), 12345); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("Kill of an unknown connection: %v, want not found", err)
	}
}

// TestExitStatus checks how an exit status is recorded, with and without
// IgnoreExitStatus.
func TestExitStatus(t *testing.T) {
	ignored := handlerSocket("ignored", testhandler.Exit3)
	ignored.IgnoreExitStatus = true
	h := start(t, activator.Config{}, handlerSocket("exit3", testhandler.Exit3), ignored)

	for i, tc := range []struct {
		name  string
		state socketd.ConnectionState
	}{
		{"exit3", socketd.ConnFailed},
		{"ignored", socketd.ConnExited},
	} {
		roundTrip(t, h.addr(t, tc.name), "")
		row := h.rec.row(t, h.rec.nthBegun(t, i+1))
		if row.State != tc.state || row.ExitCode == nil || *row.ExitCode != 3 || row.Signal != "" {
			t.Errorf("%s: row %s, exit %v, signal %q; want %s with exit 3", tc.name, row.State, row.ExitCode, row.Signal, tc.state)
		}
		if st := h.status(t, tc.name); st.Error != "" {
			t.Errorf("%s: a handler's exit status shows as a socket error: %q", tc.name, st.Error)
		}
	}
}

// TestCloseTerminatesHandlers closes the activator with handlers running:
// it must end them within StopTimeout and finish their rows before it
// returns.
func TestCloseTerminatesHandlers(t *testing.T) {
	h := start(t, activator.Config{StopTimeout: stopTimeout},
		handlerSocket("hang", testhandler.ReadyHang), handlerSocket("trap", testhandler.TrapTerm))
	var clients []io.Reader
	for _, name := range []string{"hang", "trap"} {
		c := dial(t, h.addr(t, name))
		if got := readLine(t, c); got != "ready" {
			t.Fatalf("read %q", got)
		}
		clients = append(clients, c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	began := time.Now()
	if err := h.a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < stopTimeout || took > stopTimeout+5*time.Second {
		t.Errorf("Close took %v with StopTimeout %v", took, stopTimeout)
	}
	h.rec.mu.Lock()
	rows := map[int64]socketd.Connection{}
	for id, row := range h.rec.finished {
		rows[id] = row
	}
	h.rec.mu.Unlock()
	if len(rows) != 2 || rows[1].State != socketd.ConnKilled || rows[1].Signal != "SIGTERM" ||
		rows[2].State != socketd.ConnKilled || rows[2].Signal != "SIGKILL" {
		t.Errorf("rows after Close: %+v; want both killed, by SIGTERM and SIGKILL", rows)
	}
	for _, c := range clients {
		if out, err := io.ReadAll(c); err != nil || len(out) != 0 {
			t.Errorf("client read %q, %v; want end of file", out, err)
		}
	}
	if err := h.a.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.a.Apply(ctx); err == nil {
		t.Error("Apply after Close succeeded")
	}
}

// TestCloseDuringBegin closes the activator while a connection's row is
// being written: its handler must not start, and its row must be finished.
func TestCloseDuringBegin(t *testing.T) {
	h := start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello))
	entered, release := make(chan struct{}), make(chan struct{})
	h.rec.setBegin(nil, func(*socketd.Connection) {
		close(entered)
		<-release
	})
	c := dial(t, h.addr(t, "hello"))
	waitChan(t, "BeginConnection", entered)
	closed := make(chan error, 1)
	go func() { closed <- h.a.Close(context.Background()) }()
	// Close cannot finish while the row is being written; once the
	// listeners are closed, let Begin return.
	eventually(t, "the listener to close", func() bool { return len(h.status(t, "hello").Listening) == 0 })
	close(release)
	if err := waitChan(t, "Close", closed); err != nil {
		t.Fatal(err)
	}
	row := h.rec.row(t, 1)
	if row.State != socketd.ConnRefused || row.PID != 0 || row.Error == "" {
		t.Errorf("row %s, pid %d, error %q; want refused without a handler", row.State, row.PID, row.Error)
	}
	if out, _ := io.ReadAll(c); len(out) != 0 {
		t.Errorf("client read %q", out)
	}
}

// leaveTrapped serves one connection of socket "spawn", whose handler leaves
// behind in its process group a grandchild that ignores SIGTERM, and
// returns the grandchild's pid once the connection's row is finished.
func leaveTrapped(t *testing.T, h *harness) int {
	t.Helper()
	before, _ := h.rec.counts()
	line := strings.TrimSpace(roundTrip(t, h.addr(t, "spawn"), ""))
	// However the test ends, it must not leave the grandchild running.
	openPidfds(t, line)
	pid, _ := strconv.Atoi(line) // openPidfds has checked it
	if row := h.rec.row(t, h.rec.nthBegun(t, before+1)); row.State != socketd.ConnExited {
		t.Errorf("row %s %s, want exited", row.State, row.Error)
	}
	return pid
}

// goneWithin waits up to d for process pid to end.
func goneWithin(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs after %v", pid, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeftoverProcessesKilled checks that what a handler leaves running in
// its process group, if it ignores the SIGTERM it gets when the handler
// exits, is killed StopTimeout later, as systemd's KillMode=control-group
// does: through the handler's pidfd, and through kill(2) where the kernel
// cannot signal a group through a pidfd.
func TestLeftoverProcessesKilled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fallback bool
	}{{"pidfd", false}, {"kill", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fallback {
				activator.UseKillFallback(t)
			}
			const stop = 300 * time.Millisecond
			h := start(t, activator.Config{StopTimeout: stop}, handlerSocket("spawn", testhandler.SpawnTrap))
			for range 2 {
				pid := leaveTrapped(t, h)
				goneWithin(t, pid, stop+5*time.Second)
			}
			eventually(t, "the kill to be logged", func() bool {
				return strings.Count(h.logs.String(), "sent SIGKILL to processes a handler left behind") == 2
			})
		})
	}
}

// TestCloseKillsLeftovers checks that Close waits for the SIGKILL of what
// handlers left behind, at most StopTimeout, and kills it at once if its
// context ends first: no leftover outlives the daemon.
func TestCloseKillsLeftovers(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		const stop = 2 * time.Second
		h := start(t, activator.Config{StopTimeout: stop}, handlerSocket("spawn", testhandler.SpawnTrap))
		pid := leaveTrapped(t, h)
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := h.a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > stop+5*time.Second {
			t.Errorf("Close took %v with StopTimeout %v", took, stop)
		}
		// Close returns once the SIGKILL is sent; dying takes a moment.
		goneWithin(t, pid, time.Second)
	})
	t.Run("context", func(t *testing.T) {
		// A StopTimeout no test waits for: only Close can end it.
		h := start(t, activator.Config{StopTimeout: time.Hour}, handlerSocket("spawn", testhandler.SpawnTrap))
		pid := leaveTrapped(t, h)
		// The row is finished and the SIGTERM sent: the grandchild must
		// have survived it, or this test proves nothing. Give it time to
		// misbehave.
		time.Sleep(100 * time.Millisecond)
		if gone(pid) {
			t.Fatal("the grandchild died of SIGTERM")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := h.a.Close(ctx); err == nil {
			t.Error("Close returned before the leftover's StopTimeout")
		}
		goneWithin(t, pid, time.Second)
		// The harness closes again, and must find everything finished.
	})
}

// TestExitStateFollowsSystemd: exit 0 and the signals systemd counts as a
// clean end (SIGHUP, SIGINT, SIGTERM, SIGPIPE) are exited; other signals
// and non-zero exits failed, unless ignored; whatever socketd stopped is
// killed.
func TestExitStateFollowsSystemd(t *testing.T) {
	exit := func(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }
	sig := func(s unix.Signal) unix.WaitStatus { return unix.WaitStatus(s) }
	for _, tc := range []struct {
		ws              unix.WaitStatus
		stopped, ignore bool
		want            socketd.ConnectionState
	}{
		{exit(0), false, false, socketd.ConnExited},
		{exit(3), false, false, socketd.ConnFailed},
		{exit(3), false, true, socketd.ConnExited},
		{sig(unix.SIGTERM), false, false, socketd.ConnExited},
		{sig(unix.SIGPIPE), false, false, socketd.ConnExited},
		{sig(unix.SIGHUP), false, false, socketd.ConnExited},
		{sig(unix.SIGINT), false, false, socketd.ConnExited},
		{sig(unix.SIGKILL), false, false, socketd.ConnFailed},
		{sig(unix.SIGSEGV), false, false, socketd.ConnFailed},
		{sig(unix.SIGSEGV), false, true, socketd.ConnExited},
		{sig(unix.SIGTERM), true, false, socketd.ConnKilled},
		{exit(0), true, true, socketd.ConnKilled},
	} {
		if got := activator.ExitState(tc.ws, tc.stopped, tc.ignore); got != tc.want {
			t.Errorf("exitState(%#x, stopped=%v, ignore=%v) = %s, want %s", uint32(tc.ws), tc.stopped, tc.ignore, got, tc.want)
		}
	}
}
