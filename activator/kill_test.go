package activator_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

const stopTimeout = 500 * time.Millisecond

// TestKill kills running handlers: one that dies of SIGTERM, one that
// ignores it and needs SIGKILL after StopTimeout.
func TestKill(t *testing.T) {
	h := start(t, activator.Config{StopTimeout: stopTimeout},
		handlerSocket("hang", testhandler.ReadyHang), handlerSocket("trap", testhandler.TrapTerm))

	for i, tc := range []struct {
		name, signal string
		min          time.Duration
	}{
		{"hang", "SIGTERM", 0},
		{"trap", "SIGKILL", stopTimeout},
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
