package activator_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
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

// unixRoundTrip connects to the unix socket at addr, sends in, half-closes,
// and returns all it reads.
func unixRoundTrip(t *testing.T, addr, in string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestUnixSockets: a path and an abstract name serve connections; the
// handler learns its peer as unixserver tells it (PROTO=UNIX and the peer's
// pid, uid and gid), the row records the peer's credentials instead of an
// address, the file has socket_mode, and it is removed when the socket
// stops listening.
func TestUnixSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "env.sock") // the directory is made too
	abstract := fmt.Sprintf("@socketd-test-%d", os.Getpid())
	s := testhandler.Socket("env", testhandler.Environ, path, abstract)
	s.SocketMode = "0600"
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	if got := h.status(t, "env").Listening; len(got) != 2 || got[0] != path || got[1] != abstract {
		t.Errorf("listening on %q", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file: %v, %v", fi.Mode(), err)
	}
	for _, addr := range []string{path, abstract} {
		env := envMap(unixRoundTrip(t, addr, ""))
		want := map[string]string{"PROTO": "UNIX", "UNIXREMOTEPID": strconv.Itoa(os.Getpid()),
			"UNIXREMOTEEUID": strconv.Itoa(os.Geteuid()), "UNIXREMOTEEGID": strconv.Itoa(os.Getegid())}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", addr, k, env[k], v)
			}
		}
		for _, k := range []string{"REMOTE_ADDR", "TCPREMOTEIP", "LISTEN_FDS"} {
			if v, ok := env[k]; ok {
				t.Errorf("%s: %s=%q set", addr, k, v)
			}
		}
		row := h.rec.row(t, mustAtoi(t, env["SOCKETD_CONNECTION_ID"]))
		if row.PeerPID == nil || *row.PeerPID != os.Getpid() || *row.PeerUID != os.Geteuid() || *row.PeerGID != os.Getegid() ||
			row.RemoteIP != "" || row.LocalIP != "" {
			t.Errorf("%s: row %+v", addr, row)
		}
	}

	s.Enabled = false
	h.apply(t, s)
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after the socket stopped: %v", err)
	}
}

// TestUnixSocketInTheWay: a socket file nothing listens on is replaced; one
// a process listens on, or a file that is not a socket, fails the socket
// with a reason and is left alone.
func TestUnixSocketInTheWay(t *testing.T) {
	dir := t.TempDir()
	stale, live, plain := filepath.Join(dir, "stale.sock"), filepath.Join(dir, "live.sock"), filepath.Join(dir, "plain")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // left behind, as by a daemon that died
	other, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := os.WriteFile(plain, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, activator.Config{},
		testhandler.Socket("stale", testhandler.Hello, stale),
		testhandler.Socket("live", testhandler.Hello, live),
		testhandler.Socket("plain", testhandler.Hello, plain))
	// The client talks first and the handler never reads: socketd drains
	// the input, so that the client sees its output and end of file, not
	// a reset.
	if got := unixRoundTrip(t, stale, strings.Repeat("unread request\n", 1000)); got != "Hello World\n" {
		t.Errorf("stale socket replaced: read %q", got)
	}
	for name, want := range map[string]string{"live": "something listens on " + live, "plain": plain + " exists and is not a socket"} {
		if st := h.status(t, name); st.State != socketd.SocketFailed || !strings.Contains(st.Error, want) {
			t.Errorf("%s: %s %q, want failed with %q", name, st.State, st.Error, want)
		}
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep me" {
		t.Errorf("the plain file: %q, %v", b, err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the other listener's socket: %v", err)
	} else {
		c.Close()
	}
}

// TestUnixSocketOwner: socket_user and socket_group own the file.
func TestUnixSocketOwner(t *testing.T) {
	testhandler.RequireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	path := filepath.Join(t.TempDir(), "owned.sock")
	s := testhandler.Socket("owned", testhandler.Hello, path)
	s.SocketUser, s.SocketGroup, s.SocketMode = "nobody", "4242", "0660"
	mustValid(t, s)
	start(t, activator.Config{}, s)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if strconv.Itoa(int(st.Uid)) != nobody.Uid || st.Gid != 4242 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file owned by %d:%d, mode %v", st.Uid, st.Gid, fi.Mode())
	}
}

// TestUnixService: a service gets a unix listening socket too.
func TestUnixService(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.sock")
	start(t, activator.Config{}, serviceSocket("usvc", testhandler.SDService, path))
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if got := readLine(t, c); !strings.HasPrefix(got, "0 usvc pid=") {
		t.Errorf("service wrote %q", got)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
