package activator_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// dynamicScript reports who the handler is and what it sees: its uid, gid
// and groups, its no_new_privs, and the files in /tmp and /var/tmp after it
// has left one in /tmp; then, given a line, it leaves a process behind
// outside its process group, writes its pid, and waits for one more line.
const dynamicScript = `id -u; id -g; id -G; grep NoNewPrivs /proc/self/status | cut -f2
touch /tmp/mark-$SOCKETD_CONNECTION_ID; echo $(ls /tmp) / $(ls /var/tmp 2>/dev/null)
if read line; then setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; read line; fi`

func dynamicSocket(name string) socketd.Socket {
	s := socketd.NewSocket()
	s.Name, s.Listen, s.DynamicUser = name, []string{"127.0.0.1:0"}, true
	s.Command = []string{"/bin/sh", "-c", dynamicScript}
	return s
}

// dynamicRun is what dynamicScript reported.
type dynamicRun struct {
	uid, gid, groups, noNewPrivs, tmp string
}

func readDynamic(t *testing.T, lines func() string) dynamicRun {
	t.Helper()
	return dynamicRun{lines(), lines(), lines(), lines(), lines()}
}

// TestDynamicUser: each connection runs as a user and group of its own from
// the range, with no supplementary groups, no_new_privs, and a /tmp and
// /var/tmp of its own that the next connection does not see; connections
// alive at once never share a uid; the row records it.
func TestDynamicUser(t *testing.T) {
	testhandler.RequireRoot(t)
	s := dynamicSocket("dyn")
	mustValid(t, s)
	// A file in the host's /tmp stays out of sight.
	host, err := os.CreateTemp("", "socketd-host-*")
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	defer os.Remove(host.Name())
	// A range of its own: a pool kills whatever runs as its uids, and the
	// tests of other packages run at the same time.
	h := start(t, activator.Config{DynamicUIDMin: 63000, DynamicUIDMax: 63099}, s)

	seen := map[string]bool{}
	var conns []func() string
	for i := range 3 { // alive at once
		c := dial(t, h.addr(t, "dyn"))
		run := readDynamic(t, func() string { return readLine(t, c) })
		id := h.rec.nthBegun(t, i+1)
		u, err := strconv.Atoi(run.uid)
		if err != nil || u < 63000 || u > 63099 || run.gid != run.uid {
			t.Errorf("connection %d: uid %q, gid %q", i, run.uid, run.gid)
		}
		if run.groups != run.gid || run.noNewPrivs != "1" {
			t.Errorf("connection %d: groups %q, no_new_privs %q", i, run.groups, run.noNewPrivs)
		}
		if want := fmt.Sprintf("mark-%d /", id); run.tmp != want {
			t.Errorf("connection %d: /tmp and /var/tmp hold %q, want %q", i, run.tmp, want)
		}
		if seen[run.uid] {
			t.Errorf("uid %s given to two live connections", run.uid)
		}
		seen[run.uid] = true
		conns = append(conns, func() string { c.CloseWrite(); return readAll(t, c) })
	}
	for i, end := range conns {
		end()
		id := h.rec.nthBegun(t, i+1)
		row := h.rec.row(t, id)
		if row.State != socketd.ConnExited || row.UID == nil || !seen[strconv.Itoa(*row.UID)] {
			t.Errorf("row %d: %s (%s), uid %v", id, row.State, row.Error, row.UID)
		}
	}
}

// TestDynamicUserRange: with a range of one uid, a second live connection
// is refused with the reason; a process the first leaves running outside
// its process group dies with it, and the uid is handed out again.
func TestDynamicUserRange(t *testing.T) {
	testhandler.RequireRoot(t)
	// Without cgroups: what kills the process left behind is the kill of
	// its uid (the cgroups' part is TestNoProcessEscapes).
	h := start(t, activator.Config{DynamicUIDMin: 64000, DynamicUIDMax: 64000, NoCgroups: true}, dynamicSocket("one"))
	first := dial(t, h.addr(t, "one"))
	run := readDynamic(t, func() string { return readLine(t, first) })
	if run.uid != "64000" {
		t.Fatalf("uid %s, want 64000", run.uid)
	}
	if out := roundTrip(t, h.addr(t, "one"), ""); out != "" {
		t.Errorf("second connection got %q", out)
	}
	row := h.rec.row(t, h.rec.nthBegun(t, 2))
	if row.State != socketd.ConnRefused || !strings.Contains(row.Error, "no dynamic user is free in 64000-64000") {
		t.Errorf("second connection: %s (%s)", row.State, row.Error)
	}

	// The first leaves a process behind, outside its group.
	if _, err := first.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(first).ReadString('\n')
	pid, err2 := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || err2 != nil {
		row := h.rec.row(t, h.rec.nthBegun(t, 1))
		t.Fatalf("read %q: %v; row %s (%s), log %q", line, err, row.State, row.Error, row.Log)
	}
	eventually(t, "the process left behind to lead a session of its own", func() bool {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, rest, _ := strings.Cut(string(st), ") ")
		f := strings.Fields(rest) // state ppid pgrp session ...
		return len(f) > 3 && f[3] == strconv.Itoa(pid)
	})
	first.CloseWrite()
	readAll(t, first)
	h.rec.row(t, h.rec.nthBegun(t, 1))
	// It dies with its connection, once the connection's group is gone.
	eventually(t, "the process left behind to be killed", func() bool { return gone(pid) })

	// The uid comes back once the first connection's process group is
	// gone, which socketd may see a moment after the row is finished:
	// until then a connection is refused.
	var third *net.TCPConn
	eventually(t, "uid 64000 to be handed out again", func() bool {
		third = dial(t, h.addr(t, "one"))
		line, _ := bufio.NewReader(third).ReadString('\n')
		return line == "64000\n"
	})
	if !gone(pid) {
		t.Errorf("uid 64000 handed out again while process %d still runs as it", pid)
	}
	third.CloseWrite()
	readAll(t, third)
}

// readAll reads c until end of file.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %q)", err, b)
	}
	return string(b)
}

// TestDynamicUserSweepCatchesForks: a process a connection leaves behind,
// one that keeps forking and exiting (so that a scan of /proc can always
// miss it), dies with its connection; and one running as a uid of the range
// before socketd started (here, started by the test) is killed before that
// uid is handed out.
func TestDynamicUserSweepCatchesForks(t *testing.T) {
	testhandler.RequireRoot(t)
	dir, err := os.MkdirTemp("/dev/shm", "socketd-sweep-") // not in the handler's private /tmp
	if err != nil {
		testhandler.Require(t, "/dev/shm")
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	const uid, other = 64100, 64101
	t.Cleanup(func() { killUID(uid); killUID(other) })
	// hop writes a heartbeat to its file, forks itself and exits, every
	// few milliseconds.
	const hop = `setsid sh -c 'hop() { date +%s%N > "$1"; sleep 0.005; (hop "$1" &); }; hop "$1"' hop "$0" </dev/null >/dev/null 2>&1 &
while [ ! -s "$0" ]; do sleep 0.01; done`
	// beats reports whether file changes within d: a hop takes a few
	// milliseconds, or more on a loaded machine.
	beats := func(file string, d time.Duration) bool {
		a, _ := os.ReadFile(file)
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if b, _ := os.ReadFile(file); len(a) > 0 && string(a) != string(b) {
				return true
			}
		}
		return false
	}
	beating := func(file string) bool { return beats(file, 2*time.Second) }
	still := func(file string) bool { return !beats(file, 300*time.Millisecond) }

	s := socketd.NewSocket()
	s.Name, s.Listen, s.DynamicUser = "hop", []string{"127.0.0.1:0"}, true
	first := filepath.Join(dir, "first")
	s.Command = []string{"/bin/sh", "-c", hop + "\necho ok", first}
	// Without cgroups, as in TestDynamicUserRange.
	h := start(t, activator.Config{DynamicUIDMin: uid, DynamicUIDMax: uid, NoCgroups: true}, s)
	if got := roundTrip(t, h.addr(t, "hop"), ""); got != "ok\n" {
		t.Fatalf("the connection read %q", got)
	}
	eventually(t, "the process left behind to die with its connection", func() bool { return still(first) })

	// A hopper of another uid, as if left by a socketd before this one.
	before := filepath.Join(dir, "before")
	cmd := exec.Command("/bin/sh", "-c", hop, before)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: other, Gid: other}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !beating(before) {
		t.Fatal("the hopper of uid 64101 does not beat")
	}
	s2 := s
	s2.Name, s2.Command = "hop2", []string{"/bin/sh", "-c", "id -u"}
	h2 := start(t, activator.Config{DynamicUIDMin: other, DynamicUIDMax: other}, s2)
	if got := roundTrip(t, h2.addr(t, "hop2"), ""); got != "64101\n" {
		t.Fatalf("the other activator's connection read %q", got)
	}
	if !still(before) {
		t.Errorf("a new pool handed out uid 64101 while a process still runs as it")
	}
}

// killUID kills every process running as uid, from a shell of that uid.
func killUID(uid uint32) {
	cmd := exec.Command("/bin/sh", "-c", "kill -9 -1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	cmd.Run()
}
