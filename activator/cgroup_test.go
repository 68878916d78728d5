package activator_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// requireCgroups skips t unless h's activator has connection cgroups, or
// fails it under testhandler.StrictEnv.
func requireCgroups(t *testing.T, h *harness) {
	t.Helper()
	if h.a.CgroupDir() == "" {
		testhandler.Require(t, "a cgroup v2 hierarchy socketd may make cgroups in (root): "+h.logs.String())
	}
}

// escapeScript leaves two processes that ignore SIGTERM outside its process
// group and session: one through setsid, one through a double fork as
// well. Each writes its pid once SIGTERM is ignored; then the handler waits
// for a line.
const escapeScript = `escape='trap "" TERM; echo $$; exec sleep 1000 >/dev/null'
setsid sh -c "$escape" </dev/null 2>/dev/null &
(setsid sh -c "$escape" </dev/null 2>/dev/null &)
read line`

func shellSocket(name, script string) socketd.Socket {
	s := socketd.NewSocket()
	s.Name, s.Listen = name, []string{"127.0.0.1:0"}
	s.Command = []string{"/bin/sh", "-c", script}
	return s
}

// openPidfds opens a pidfd on each of the processes a handler wrote the
// pids of, one a line; the processes are killed when the test ends, through
// the pidfd, which reaches them and nothing else even once a pid is reused.
func openPidfds(t *testing.T, lines ...string) []int {
	t.Helper()
	var fds []int
	for _, line := range lines {
		pid, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("handler wrote %q", line)
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open %d: %v", pid, err)
		}
		fds = append(fds, fd)
		t.Cleanup(func() {
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			unix.Close(fd)
		})
	}
	return fds
}

// exitedWithin reports whether every process of pidfds has exited within d.
func exitedWithin(pidfds []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for _, fd := range pidfds {
		for {
			left := time.Until(deadline)
			if left < 0 {
				return false
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
			if err == unix.EINTR {
				continue
			}
			if n == 1 {
				break
			}
			if n == 0 {
				return false
			}
		}
	}
	return true
}

// TestNoProcessEscapes: whatever a handler starts in a session of its own,
// directly or through a double fork, and even if it ignores SIGTERM, dies
// with its connection: when the connection is killed through the API, when
// it runs out its runtime_max or idle_timeout, when the handler exits, and
// when socketd shuts down, in time or not; also where handlers are started
// without clone3. Without cgroups (the last case) those processes do
// escape, which shows that the test can tell.
func TestNoProcessEscapes(t *testing.T) {
	const stop = 300 * time.Millisecond
	kill := func(t *testing.T, h *harness, c *net.TCPConn) {
		if err := h.a.Kill(context.Background(), h.rec.nthBegun(t, 1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		noCgroups bool
		end       func(t *testing.T, h *harness, c *net.TCPConn)
	}{
		{"kill", false, kill},
		{"runtime_max", false, nil},
		{"idle_timeout", false, nil},
		{"kill without clone3", false, kill},
		{"exit", false, func(t *testing.T, h *harness, c *net.TCPConn) {
			if _, err := c.Write([]byte("bye\n")); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
		}},
		{"close", false, func(t *testing.T, h *harness, c *net.TCPConn) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := h.a.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"close out of time", false, func(t *testing.T, h *harness, c *net.TCPConn) {
			// Close gives up at once: everything is killed then.
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			h.a.Close(ctx)
		}},
		{"without cgroups", true, kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fallbacks := activator.CloneFallbacks()
			if strings.Contains(tc.name, "clone3") {
				activator.UseCloneFallback(t)
				defer func() {
					if activator.CloneFallbacks() == fallbacks {
						t.Error("the handler was not started without clone3")
					}
				}()
			}
			s := shellSocket("escape", escapeScript)
			switch tc.name {
			case "runtime_max":
				s.RuntimeMax = "200ms"
			case "idle_timeout":
				s.IdleTimeout = "200ms"
			}
			mustValid(t, s)
			stop := stop
			if tc.name == "close out of time" {
				stop = time.Hour // only the hurry can end it
			}
			h := start(t, activator.Config{StopTimeout: stop, NoCgroups: tc.noCgroups}, s)
			if !tc.noCgroups {
				requireCgroups(t, h)
			}
			c := dial(t, h.addr(t, "escape"))
			pidfds := openPidfds(t, readLine(t, c), readLine(t, c))
			if tc.end != nil {
				tc.end(t, h, c)
			}
			row := h.rec.row(t, h.rec.nthBegun(t, 1))
			if tc.noCgroups {
				if exitedWithin(pidfds, stop+time.Second) {
					t.Fatal("the escaped processes died without cgroups: this test cannot tell")
				}
				return
			}
			if !exitedWithin(pidfds, min(stop, time.Second)+5*time.Second) {
				t.Fatalf("a process the handler started outside its group outlived the connection (row %s)", row.State)
			}
			want := socketd.ConnKilled
			if tc.name == "exit" {
				want = socketd.ConnExited
			}
			if row.State != want {
				t.Errorf("row %s %s, want %s", row.State, row.Error, want)
			}
		})
	}
}

// TestNestedCgroupsKilled: a handler running as root may make cgroups
// below its connection's and move processes there; they die with the
// connection too.
func TestNestedCgroupsKilled(t *testing.T) {
	s := shellSocket("nest", `d="$MNT$(sed -n 's/^0:://p' /proc/self/cgroup)/nested"; mkdir "$d" || exit 1
NESTED=$d setsid sh -c 'trap "" TERM; echo $$ > "$NESTED/cgroup.procs" && echo $$; exec sleep 1000 >/dev/null' </dev/null 2>/dev/null &
read line`)
	h := start(t, activator.Config{StopTimeout: 200 * time.Millisecond}, s)
	requireCgroups(t, h)
	s.Environment = map[string]string{"MNT": h.a.CgroupMount()}
	h.apply(t, s)
	c := dial(t, h.addr(t, "nest"))
	pidfds := openPidfds(t, readLine(t, c))
	if err := h.a.Kill(context.Background(), h.rec.nthBegun(t, 1)); err != nil {
		t.Fatal(err)
	}
	if !exitedWithin(pidfds, 5*time.Second) {
		t.Fatal("a process in a cgroup below the connection's outlived it")
	}
}

// markedProcesses counts the processes whose environment holds marker.
func markedProcesses(marker string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && strings.Contains(string(env), marker) {
			n++
		}
	}
	return n
}

// connCgroup is the name of the connection cgroup process pid runs in.
func connCgroup(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Base(path)
		}
	}
	t.Fatalf("process %s is in no cgroup v2:\n%s", pid, b)
	return ""
}

// TestTasksMax: a fork bomb under tasks_max never has more processes than
// the cap, and all of them die with the connection. It runs as nobody with
// a limit_nproc, so that a cap that failed could not take the host down.
func TestTasksMax(t *testing.T) {
	testhandler.RequireRoot(t)
	marker := fmt.Sprintf("SOCKETD_TEST_BOMB=%d", time.Now().UnixNano())
	s := shellSocket("bomb", `echo $$; bomb() { bomb | bomb & }; bomb; echo started; read line`)
	s.Command[0] = "/bin/bash"
	s.User, s.TasksMax, s.LimitNPROC = "nobody", "16", "300"
	k, v, _ := strings.Cut(marker, "=")
	s.Environment = map[string]string{k: v}
	mustValid(t, s)
	h := start(t, activator.Config{StopTimeout: 300 * time.Millisecond}, s)
	requireCgroups(t, h)
	c := dial(t, h.addr(t, "bomb"))
	pid := readLine(t, c)
	if got := readLine(t, c); got != "started" {
		t.Fatalf("read %q", got)
	}
	dir := h.a.CapsDir("pids", connCgroup(t, pid))
	if dir == "" {
		testhandler.Require(t, "a pids cgroup controller")
	}
	most := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		most = max(most, markedProcesses(marker))
	}
	events, _ := os.ReadFile(filepath.Join(dir, "pids.events"))
	if most > 16 || most < 8 {
		t.Errorf("the bomb had up to %d processes at once; want up to tasks_max 16, and the cap reached", most)
	}
	if max, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(events)), "max ")); max == 0 {
		t.Errorf("pids.events says %q: the bomb never hit the cap", events)
	}
	if err := h.a.Kill(context.Background(), h.rec.nthBegun(t, 1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every process of the bomb to die", func() bool { return markedProcesses(marker) == 0 })
	if row := h.rec.row(t, h.rec.nthBegun(t, 1)); row.State != socketd.ConnKilled {
		t.Errorf("row %s %s, want killed", row.State, row.Error)
	}
}

// TestMemoryMax: a handler whose pipeline takes more memory than
// memory_max has the process that took it killed by the kernel; without the
// cap the same pipeline runs through.
func TestMemoryMax(t *testing.T) {
	const script = `head -c 256M /dev/zero | tail -n 1 >/dev/null; echo $?`
	capped, free := shellSocket("capped", script), shellSocket("free", script)
	capped.MemoryMax = "32M"
	mustValid(t, capped, free)
	h := start(t, activator.Config{}, capped, free)
	requireCgroups(t, h)
	if swaps, _ := os.ReadFile("/proc/swaps"); strings.Count(string(swaps), "\n") > 1 {
		// As with systemd's MemoryMax=, pages beyond the cap go to swap.
		testhandler.Require(t, "a host without swap")
	}
	if out := roundTrip(t, h.addr(t, "capped"), ""); out != "137\n" {
		t.Errorf("under memory_max 32M the pipeline exited with %q; want 137 (SIGKILL)", out)
	}
	if out := roundTrip(t, h.addr(t, "free"), ""); out != "0\n" {
		t.Errorf("without a cap the pipeline exited with %q; want 0", out)
	}
}

// TestCapsWithoutCgroups: a definition with a cap starts no handler where
// socketd has no cgroups, and says why.
func TestCapsWithoutCgroups(t *testing.T) {
	s := handlerSocket("capped", testhandler.Hello)
	s.TasksMax = "10"
	h := start(t, activator.Config{NoCgroups: true}, s)
	roundTrip(t, h.addr(t, "capped"), "")
	row := h.rec.row(t, h.rec.nthBegun(t, 1))
	if row.State != socketd.ConnFailed || !strings.Contains(row.Error, "need a cgroup") {
		t.Errorf("row %s %q; want failed, saying that caps need a cgroup", row.State, row.Error)
	}
}

// TestCgroupsReused: connections one after another use the same cgroup
// again; a killed one is replaced (the kernel would kill whatever starts in
// it); Close removes them all.
func TestCgroupsReused(t *testing.T) {
	h := start(t, activator.Config{StopTimeout: 100 * time.Millisecond},
		handlerSocket("hello", testhandler.Hello), handlerSocket("trap", testhandler.TrapTerm))
	requireCgroups(t, h)
	dir := h.a.CgroupDir()
	cgroups := func() []string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		return names
	}
	n := 0
	var first []string // the one cgroup before the kill
	for i := range 20 {
		if out := roundTrip(t, h.addr(t, "hello"), ""); out != "Hello World\n" {
			t.Fatalf("connection %d read %q", i, out)
		}
		n++
		h.rec.row(t, h.rec.nthBegun(t, n)) // finished: its cgroup is given back
		switch {
		case i == 0:
			first = cgroups()
			if len(first) != 1 {
				t.Fatalf("cgroups after one connection: %v", first)
			}
		case i <= 10:
			if got := cgroups(); !slices.Equal(got, first) {
				t.Fatalf("cgroups after connection %d: %v; want %v used again", i, got, first)
			}
		}
		if i == 10 {
			c := dial(t, h.addr(t, "trap"))
			readLine(t, c)
			n++
			if err := h.a.Kill(context.Background(), h.rec.nthBegun(t, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The killed one (the one the others used) goes once it is empty, and
	// another serves from then on.
	eventually(t, "one cgroup to serve connections one at a time", func() bool { return len(cgroups()) <= 1 })
	if got := cgroups(); len(got) != 1 || got[0] == first[0] {
		t.Errorf("cgroups after the kill: %v; want one other than %v", got, first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := h.a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after Close: %v; want it removed", dir, err)
	}
}

// TestStaleCgroupsSwept: what a socketd that died left running in its
// connection cgroups is killed when the next one starts, and its directory
// removed.
func TestStaleCgroupsSwept(t *testing.T) {
	first := start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello))
	requireCgroups(t, first)
	// A live socketd with a cgroup in its pool, which the next one must
	// leave alone.
	if out := roundTrip(t, first.addr(t, "hello"), ""); out != "Hello World\n" {
		t.Fatalf("read %q", out)
	}
	first.rec.row(t, first.rec.nthBegun(t, 1))
	firstPool, _ := os.ReadDir(first.a.CgroupDir())
	stale := filepath.Join(filepath.Dir(first.a.CgroupDir()), fmt.Sprintf("socketd-%d", 900+os.Getpid()%100))
	if err := os.MkdirAll(filepath.Join(stale, "c1"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(stale, "c1")); os.Remove(stale) })
	cg, err := os.Open(filepath.Join(stale, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	left := exec.Command("/bin/sleep", "1000")
	left.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Setsid: true}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()
	t.Cleanup(func() { left.Process.Kill() })

	start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello))
	// The live socketd's directory is not touched.
	if pool, err := os.ReadDir(first.a.CgroupDir()); err != nil || len(pool) != len(firstPool) || len(firstPool) < 2 {
		t.Errorf("the first socketd's directory after the second started: %d entries, %v; before %d",
			len(pool), err, len(firstPool))
	}
	select {
	case err := <-exited:
		if ws, ok := left.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the process left behind ended with %v; want SIGKILL", err)
		}
	case <-time.After(timeout):
		t.Fatal("the process a dead socketd left in its cgroup still runs")
	}
	eventually(t, "the stale directory to go", func() bool {
		_, err := os.Stat(stale)
		return os.IsNotExist(err)
	})
}
