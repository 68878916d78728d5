package activator_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// A file in the host's /tmp stays out of sight.
	host, err := os.CreateTemp("", "socketd-host-*")
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	defer os.Remove(host.Name())
	h := start(t, activator.Config{}, s)

	seen := map[string]bool{}
	var conns []func() string
	for i := range 3 { // alive at once
		c := dial(t, h.addr(t, "dyn"))
		run := readDynamic(t, func() string { return readLine(t, c) })
		id := h.rec.nthBegun(t, i+1)
		u, err := strconv.Atoi(run.uid)
		if err != nil || u < activator.DefaultDynamicUIDMin || u > activator.DefaultDynamicUIDMax || run.gid != run.uid {
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
// is refused with the reason; a uid is handed out again only once every
// process left running under it (here one that escaped its process group)
// is killed.
func TestDynamicUserRange(t *testing.T) {
	testhandler.RequireRoot(t)
	h := start(t, activator.Config{DynamicUIDMin: 64000, DynamicUIDMax: 64000}, dynamicSocket("one"))
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
	if gone(pid) {
		t.Fatalf("the process left behind (%d) is gone already", pid)
	}

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

// TestDynamicUserSweepCatchesForks: a process left behind that keeps
// forking and exiting (so that a scan of /proc can always miss it) is
// killed before its uid is handed out again, and so is one left behind
// before socketd started (here, by another activator).
func TestDynamicUserSweepCatchesForks(t *testing.T) {
	testhandler.RequireRoot(t)
	dir, err := os.MkdirTemp("/dev/shm", "socketd-sweep-") // not in the handler's private /tmp
	if err != nil {
		testhandler.Require(t, "/dev/shm")
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	const uid = 64100
	t.Cleanup(func() { killUID(uid) })
	// Each handler leaves behind a process that writes a heartbeat to a
	// file named after its connection, forks itself and exits, every few
	// milliseconds; the handler ends once it has escaped its group.
	hopper := func(name string) socketd.Socket {
		s := socketd.NewSocket()
		s.Name, s.Listen, s.DynamicUser = name, []string{"127.0.0.1:0"}, true
		s.Command = []string{"/bin/sh", "-c", `f=` + dir + `/$SOCKETD_SOCKET-$SOCKETD_CONNECTION_ID
setsid sh -c 'hop() { date +%s%N > "$1"; sleep 0.005; (hop "$1" &); }; hop "$1"' hop $f </dev/null >/dev/null 2>&1 &
while [ ! -s $f ]; do sleep 0.01; done
echo $f`}
		return s
	}
	beating := func(file string) bool {
		a, _ := os.ReadFile(file)
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(file)
		return len(a) > 0 && string(a) != string(b)
	}
	cfg := activator.Config{DynamicUIDMin: uid, DynamicUIDMax: uid}
	h := start(t, cfg, hopper("one"))
	first := strings.TrimSpace(roundTrip(t, h.addr(t, "one"), ""))
	eventually(t, "the first process left behind to beat", func() bool { return beating(first) })
	// The uid comes back once the first connection's group is gone, and
	// is handed out again only after a sweep.
	var second string
	eventually(t, "the uid to be handed out again", func() bool {
		second = strings.TrimSpace(roundTrip(t, h.addr(t, "one"), ""))
		return second != ""
	})
	if beating(first) {
		t.Errorf("the uid was handed out again while the first connection's process still runs as it")
	}
	eventually(t, "the second process left behind to beat", func() bool { return beating(second) })

	// Another activator, like a socketd started again, trusts no uid of
	// its range before a sweep.
	h2 := start(t, cfg, hopper("two"))
	if third := strings.TrimSpace(roundTrip(t, h2.addr(t, "two"), "")); third == "" {
		t.Fatal("the other activator refused the connection")
	}
	if beating(second) {
		t.Errorf("a new pool handed out a uid a process left behind still runs as")
	}
}

// killUID kills every process running as uid.
func killUID(uid uint32) {
	cmd := exec.Command("/bin/sh", "-c", "kill -9 -1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	cmd.Run()
}
