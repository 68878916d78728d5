package activator_test

import (
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestEcho checks a round trip through a handler and the row it leaves:
// begun before the handler exists, finished with its exit and byte counts.
func TestEcho(t *testing.T) {
	h := start(t, activator.Config{}, handlerSocket("echo", testhandler.Echo))
	addr := h.addr(t, "echo")

	entered, release := make(chan int64, 1), make(chan struct{})
	h.rec.setBegin(nil, func(c *socketd.Connection) {
		entered <- c.ID
		<-release
	})
	payload := strings.Repeat("0123456789abcdef", 100_000/16)
	c := dial(t, addr)
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	id := waitChan(t, "BeginConnection", entered)
	// The row is being recorded: no handler may exist yet.
	if !noChildren() {
		t.Error("a handler runs before its row is recorded")
	}
	close(release)

	out, err := io.ReadAll(c)
	if err != nil || string(out) != payload {
		t.Fatalf("echo returned %d bytes, %v; want %d bytes", len(out), err, len(payload))
	}
	row := h.rec.row(t, id)
	if row.State != socketd.ConnExited || row.ExitCode == nil || *row.ExitCode != 0 || row.Signal != "" {
		t.Errorf("row state %s, exit %v, signal %q; want exited 0", row.State, row.ExitCode, row.Signal)
	}
	if row.BytesIn != int64(len(payload)) || row.BytesOut != int64(len(payload)) {
		t.Errorf("bytes in %d, out %d; want %d each", row.BytesIn, row.BytesOut, len(payload))
	}
	local := c.LocalAddr().(*net.TCPAddr)
	if row.Socket != "echo" || row.RemoteIP != "127.0.0.1" || row.RemotePort != local.Port {
		t.Errorf("row socket %q remote %s:%d; want echo 127.0.0.1:%d", row.Socket, row.RemoteIP, row.RemotePort, local.Port)
	}
	if got := net.JoinHostPort(row.LocalIP, strconv.Itoa(row.LocalPort)); got != addr {
		t.Errorf("row local address %s, want %s", got, addr)
	}
	if row.PID <= 0 || row.StartedAt.IsZero() || row.EndedAt == nil || row.EndedAt.Before(row.StartedAt) ||
		row.DurationMS == nil || *row.DurationMS < 0 || row.Error != "" || len(row.Log) != 0 {
		t.Errorf("row %+v: want a pid, start <= end, a duration, no error, no log", row)
	}

	eventually(t, "connected to drop to 0", func() bool { return h.status(t, "echo").Connected == 0 })
	st := h.status(t, "echo")
	if st.Accepted != 1 || st.Refused != 0 || st.Error != "" || st.Since.IsZero() {
		t.Errorf("status %+v: want 1 accepted, none refused, no error, a since", st)
	}
}

// TestHelloWithoutSleep is the seed's Hello World without its `sleep 5`:
// the handler writes and exits without reading while the client is still
// sending. Every time, the client must get the whole greeting and a clean
// end of file, not a reset.
func TestHelloWithoutSleep(t *testing.T) {
	script := socketd.NewSocket()
	script.Name = "hello-sh"
	script.Listen = []string{"127.0.0.1:0"}
	script.Command = []string{"/bin/sh", "-c", `echo "Hello World"`}
	h := start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello), script)

	const rounds, sent = 50, 256 << 10
	junk := make([]byte, sent)
	for i := range rounds {
		name := []string{"hello", "hello-sh"}[i%2]
		c := dial(t, h.addr(t, name))
		if _, err := c.Write(junk); err != nil {
			t.Fatalf("round %d (%s): write: %v", i, name, err)
		}
		out, err := io.ReadAll(c)
		if err != nil || string(out) != "Hello World\n" {
			t.Fatalf("round %d (%s): read %q, %v; want the greeting and end of file", i, name, out, err)
		}
		c.Close()
	}
	h.rec.waitFor(t, "every row to finish", func() bool { return len(h.rec.finished) == rounds })
	for id, row := range h.rec.finished {
		if row.State != socketd.ConnExited || row.BytesIn != sent || row.BytesOut != int64(len("Hello World\n")) {
			t.Errorf("connection %d: %s, in %d, out %d; want exited, in %d, out 12", id, row.State, row.BytesIn, row.BytesOut, sent)
		}
	}
}

// TestEnvironment checks that a handler gets exactly the definition's
// environment and the connection's variables, nothing of socketd's own.
func TestEnvironment(t *testing.T) {
	t.Setenv("SOCKETD_TEST_MARKER", "from the daemon")
	plain := handlerSocket("env", testhandler.Environ, "GREETING", "hello world", "REMOTE_ADDR", "spoofed")
	// A bare port listens on every address, IPv6 and IPv4: an IPv4
	// client must still show as IPv4.
	wild := handlerSocket("env-wild", testhandler.Environ, "PATH", "/custom/bin")
	wild.Listen = []string{"0"}
	h := start(t, activator.Config{}, plain, wild)

	for _, tc := range []struct {
		sock socketd.Socket
		want map[string]string
	}{
		{plain, map[string]string{testhandler.Env: testhandler.Environ, "GREETING": "hello world", "PATH": socketd.DefaultPath}},
		{wild, map[string]string{testhandler.Env: testhandler.Environ, "PATH": "/custom/bin"}},
	} {
		t.Run(tc.sock.Name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(h.addr(t, tc.sock.Name))
			before, _ := h.rec.counts()
			c := dial(t, "127.0.0.1:"+port)
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			id := h.rec.nthBegun(t, before+1)
			rport := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
			want := maps.Clone(tc.want)
			maps.Copy(want, map[string]string{
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": rport,
				"PROTO": "TCP", "TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": rport,
				"TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": port,
				"SOCKETD_SOCKET": tc.sock.Name, "SOCKETD_CONNECTION_ID": strconv.FormatInt(id, 10),
			})
			if got := envMap(string(out)); !maps.Equal(got, want) {
				t.Errorf("environment:\n got %v\nwant %v", got, want)
			}
			if row := h.rec.row(t, id); row.State != socketd.ConnExited || row.LocalIP != "127.0.0.1" || row.RemoteIP != "127.0.0.1" {
				t.Errorf("row %s local %s remote %s; want exited, IPv4 addresses", row.State, row.LocalIP, row.RemoteIP)
			}
		})
	}
}

// TestBeginFails checks that a connection whose row cannot be written is
// closed without running its handler, and shows in the status and the log.
func TestBeginFails(t *testing.T) {
	h := start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello))
	addr := h.addr(t, "hello")
	h.rec.setBegin(os.ErrPermission, nil)

	c := dial(t, addr)
	out, err := io.ReadAll(c)
	if len(out) != 0 || (err != nil && !isReset(err)) {
		t.Fatalf("read %q, %v; want the connection closed without output", out, err)
	}
	eventually(t, "the refusal to show", func() bool { return h.status(t, "hello").Refused == 1 })
	st := h.status(t, "hello")
	if st.Accepted != 1 || st.Connected != 0 || st.State != socketd.SocketListening || !strings.Contains(st.Error, "permission denied") {
		t.Errorf("status %+v: want 1 accepted, 0 connected, listening, the record error", st)
	}
	if !strings.Contains(h.logs.String(), "msg=record") {
		t.Errorf("the record error is not logged: %s", h.logs)
	}
	if b, f := h.rec.counts(); b != 0 || f != 0 {
		t.Errorf("%d rows begun, %d finished; want none", b, f)
	}

	h.rec.setBegin(nil, nil)
	if out := roundTrip(t, addr, ""); out != "Hello World\n" {
		t.Errorf("after the store recovered: %q", out)
	}
}

// TestBeginCommitFails: a row that fails to be committed after its handler
// started does not stop the connection; the socket shows the error and the
// log has it.
func TestBeginCommitFails(t *testing.T) {
	h := start(t, activator.Config{}, handlerSocket("hello", testhandler.Hello))
	h.rec.setCommit(os.ErrPermission)
	if out := roundTrip(t, h.addr(t, "hello"), ""); out != "Hello World\n" {
		t.Fatalf("read %q, want the greeting", out)
	}
	eventually(t, "the record error to show", func() bool {
		return strings.Contains(h.status(t, "hello").Error, "permission denied")
	})
	if st := h.status(t, "hello"); st.Accepted != 1 || st.Refused != 0 || st.State != socketd.SocketListening {
		t.Errorf("status %+v: want 1 accepted, none refused, listening", st)
	}
	if !strings.Contains(h.logs.String(), "msg=record") {
		t.Errorf("the record error is not logged: %s", h.logs)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// TestStderr checks the three places a handler's stderr can go, and that a
// captured log keeps only its last 64 KiB.
func TestStderr(t *testing.T) {
	sock := func(name, mode string, kv ...string) socketd.Socket {
		s := handlerSocket(name, testhandler.Stderr, kv...)
		s.Stderr = mode
		return s
	}
	const big = 200_000
	slow := socketd.NewSocket()
	slow.Name = "slow"
	slow.Listen = []string{"127.0.0.1:0"}
	slow.Command = []string{"/bin/sh", "-c", "echo one >&2; sleep 0.3; echo two >&2; echo done"}
	h := start(t, activator.Config{}, slow,
		sock("log", socketd.StderrLog),
		sock("big", socketd.StderrLog, testhandler.StderrSize, strconv.Itoa(big)),
		sock("null", socketd.StderrNull),
		sock("socket", socketd.StderrSocket))

	for _, tc := range []struct{ name, out, log string }{
		{"log", "done\n", "hello stderr\n"},
		{"null", "done\n", ""},
		{"socket", "hello stderr\ndone\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := h.rec.counts()
			if out := roundTrip(t, h.addr(t, tc.name), ""); out != tc.out {
				t.Errorf("client read %q, want %q", out, tc.out)
			}
			row := h.rec.row(t, h.rec.nthBegun(t, before+1))
			if string(row.Log) != tc.log || row.State != socketd.ConnExited {
				t.Errorf("row %s with log %q, want exited with %q", row.State, row.Log, tc.log)
			}
		})
	}
	t.Run("long-running", func(t *testing.T) {
		// A handler still running after logWatchAfter gets a reader for its
		// pipe; what it wrote before and after is all kept.
		before, _ := h.rec.counts()
		if out := roundTrip(t, h.addr(t, "slow"), ""); out != "done\n" {
			t.Errorf("client read %q", out)
		}
		row := h.rec.row(t, h.rec.nthBegun(t, before+1))
		if string(row.Log) != "one\ntwo\n" {
			t.Errorf("log %q, want both lines", row.Log)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		before, _ := h.rec.counts()
		if out := roundTrip(t, h.addr(t, "big"), ""); out != "done\n" {
			t.Errorf("client read %q", out)
		}
		row := h.rec.row(t, h.rec.nthBegun(t, before+1))
		want := strings.Repeat(".", 64<<10-4) + "END\n"
		if string(row.Log) != want {
			t.Errorf("log of %d bytes ending %q; want the last 64 KiB", len(row.Log), row.Log[max(0, len(row.Log)-8):])
		}
	})
}

// TestSpawnError checks that a handler that cannot start fails its row and
// shows in the status, and that the socket goes on serving.
func TestSpawnError(t *testing.T) {
	missing := handlerSocket("missing", testhandler.Hello)
	missing.Command = []string{"/nonexistent/handler"}
	baddir := handlerSocket("baddir", testhandler.Hello)
	baddir.WorkingDirectory = "/nonexistent/dir"
	h := start(t, activator.Config{}, missing, baddir)

	for _, tc := range []struct{ name, err string }{
		{"missing", "/nonexistent/handler does not exist"},
		{"baddir", "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := h.rec.counts()
			if out := roundTrip(t, h.addr(t, tc.name), ""); out != "" {
				t.Errorf("client read %q, want nothing", out)
			}
			row := h.rec.row(t, h.rec.nthBegun(t, before+1))
			if row.State != socketd.ConnFailed || !strings.Contains(row.Error, tc.err) || row.PID != 0 {
				t.Errorf("row %s, pid %d, error %q; want failed, no pid, %q", row.State, row.PID, row.Error, tc.err)
			}
			if st := h.status(t, tc.name); !strings.Contains(st.Error, tc.err) || st.State != socketd.SocketListening {
				t.Errorf("status %s with error %q; want listening with %q", st.State, st.Error, tc.err)
			}
		})
	}
	if !strings.Contains(h.logs.String(), "msg=spawn") {
		t.Errorf("the spawn error is not logged: %s", h.logs)
	}
}

// TestLeftoverProcessesTerminated checks that when a handler exits, what it
// left running in its process group gets SIGTERM at once, not only the
// SIGKILL StopTimeout later.
func TestLeftoverProcessesTerminated(t *testing.T) {
	// Where no one reaps orphans (a container whose init does not), the
	// dead grandchild stays a zombie in the group, which then gets its
	// SIGKILL, and Close waits for it: keep StopTimeout short.
	const stop = 2 * time.Second
	h := start(t, activator.Config{StopTimeout: stop}, handlerSocket("spawn", testhandler.Spawn))
	out := roundTrip(t, h.addr(t, "spawn"), "")
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("handler wrote %q", out)
	}
	h.rec.row(t, 1)
	goneWithin(t, pid, stop/2)
}

// TestWorkingDirectory checks that a handler runs in "/" unless its
// definition names a directory, as under systemd and inetd, and never in
// socketd's own.
func TestWorkingDirectory(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set := handlerSocket("set", testhandler.Cwd)
	set.WorkingDirectory = dir
	h := start(t, activator.Config{}, handlerSocket("default", testhandler.Cwd), set)
	for _, tc := range []struct{ name, want string }{
		{"default", "/"},
		{"set", dir},
	} {
		if out := roundTrip(t, h.addr(t, tc.name), ""); out != tc.want+"\n" {
			t.Errorf("%s: the handler ran in %q, want %q", tc.name, strings.TrimSuffix(out, "\n"), tc.want)
		}
	}
}

// TestStdinBlocking checks that a handler's stdin and stdout are blocking:
// cat, like most programs, fails with EAGAIN on a non-blocking stdin as soon
// as it reads before the client has sent anything.
func TestStdinBlocking(t *testing.T) {
	cat := socketd.NewSocket()
	cat.Name = "cat"
	cat.Listen = []string{"127.0.0.1:0"}
	cat.Command = []string{"cat"}
	h := start(t, activator.Config{}, cat)
	c := dial(t, h.addr(t, "cat"))
	for _, line := range []string{"one", "two", "three"} {
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got != line {
			t.Fatalf("read %q, want %q", got, line)
		}
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("read %q, %v; want end of file", rest, err)
	}
	if row := h.rec.row(t, 1); row.State != socketd.ConnExited || len(row.Log) != 0 {
		t.Errorf("row %s with log %q", row.State, row.Log)
	}
}

// TestHandlerSignals checks that a handler starts as systemd starts one:
// no signal blocked and none ignored, whatever socketd's own signal
// handling (its handlers must never run in the child before the exec).
func TestHandlerSignals(t *testing.T) {
	sig := socketd.NewSocket()
	sig.Name = "signals"
	sig.Listen = []string{"127.0.0.1:0"}
	sig.Command = []string{"/bin/sh", "-c", "exec grep -E '^Sig(Blk|Ign):' /proc/self/status"}
	h := start(t, activator.Config{}, sig)
	want := "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
	// Many times: a child that ran one of socketd's handlers before its
	// exec would corrupt the daemon now and then, not every time.
	for range 50 {
		if out := roundTrip(t, h.addr(t, "signals"), ""); out != want {
			t.Fatalf("handler's signal state:\n%s\nwant\n%s", out, want)
		}
	}
}

// TestLingeringClose checks the close of a connection whose peer has not
// closed when its handler is done: socketd keeps draining it until the peer
// closes, counting what it sends, and closes it anyway once LingerTimeout
// has passed, for several peers at once.
func TestLingeringClose(t *testing.T) {
	const linger = 400 * time.Millisecond
	h := start(t, activator.Config{LingerTimeout: linger}, handlerSocket("hello", testhandler.Hello))
	addr := h.addr(t, "hello")
	greet := func(c *net.TCPConn) {
		t.Helper()
		out, err := io.ReadAll(c)
		if err != nil || string(out) != "Hello World\n" {
			t.Fatalf("read %q, %v; want the greeting and end of file", out, err)
		}
	}

	// Peers that stay: closed once linger has passed, and not before.
	var ids []int64
	var began time.Time
	for i := range 3 {
		c := dial(t, addr)
		greet(c)
		if i == 0 {
			began = time.Now()
		}
		ids = append(ids, h.rec.nthBegun(t, i+1))
	}
	for _, id := range ids {
		row := h.rec.row(t, id)
		if held := row.EndedAt.Sub(began); held < linger*3/4 {
			t.Errorf("connection %d closed %v after its handler, before the linger of %v", id, held, linger)
		}
		if row.State != socketd.ConnExited || row.BytesIn != 0 || row.BytesOut != 12 {
			t.Errorf("connection %d: %s, in %d, out %d", id, row.State, row.BytesIn, row.BytesOut)
		}
	}

	// A peer that sends more and then closes: counted, and closed then.
	c := dial(t, addr)
	greet(c)
	id := h.rec.nthBegun(t, len(ids)+1)
	sent := time.Now()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	row := h.rec.row(t, id)
	if row.BytesIn != 1000 || row.State != socketd.ConnExited {
		t.Errorf("connection %d: %s, in %d; want exited, in 1000", id, row.State, row.BytesIn)
	}
	if held := row.EndedAt.Sub(sent); held >= linger {
		t.Errorf("connection %d closed %v after its peer, not at once", id, held)
	}
}

// TestRecordRemoteIP: record_remote_ip keeps the network of a client's
// address in the history, or nothing of it, while the handler still gets
// the whole address; refusals are recorded the same way.
func TestRecordRemoteIP(t *testing.T) {
	prefix := handlerSocket("prefix", testhandler.Environ)
	prefix.RecordRemoteIP = socketd.RecordRemotePrefix
	none := handlerSocket("none", testhandler.Environ)
	none.RecordRemoteIP = socketd.RecordRemoteNone
	denied := handlerSocket("denied", testhandler.Hello)
	denied.RecordRemoteIP = socketd.RecordRemotePrefix
	denied.IPAddressDeny = []string{"any"}
	full := handlerSocket("full", testhandler.Environ)
	full.RecordRemoteIP = socketd.RecordRemoteFull
	hidden := handlerSocket("hidden", testhandler.ReadyHang)
	hidden.RecordRemoteIP = socketd.RecordRemoteNone
	hidden.MaxConnectionsPerSource = 5
	h := start(t, activator.Config{}, prefix, none, denied, full, hidden)

	for _, tc := range []struct {
		name, ip string
		port     bool
	}{{"prefix", "127.0.0.0", false}, {"none", "", false}, {"full", "127.0.0.1", true}} {
		c := dial(t, h.addr(t, tc.name))
		c.CloseWrite()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		rport := c.LocalAddr().(*net.TCPAddr).Port
		if env := envMap(string(out)); env["REMOTE_ADDR"] != "127.0.0.1" || env["REMOTE_PORT"] != strconv.Itoa(rport) {
			t.Errorf("%s: the handler got REMOTE_ADDR %q REMOTE_PORT %q; want the whole address", tc.name, env["REMOTE_ADDR"], env["REMOTE_PORT"])
		}
		row := h.rec.rowOf(t, tc.name)
		wantPort := 0
		if tc.port {
			wantPort = rport
		}
		if row.RemoteIP != tc.ip || row.RemotePort != wantPort || row.State != socketd.ConnExited {
			t.Errorf("%s: row remote %q port %d state %s; want %q port %d, exited", tc.name, row.RemoteIP, row.RemotePort, row.State, tc.ip, wantPort)
		}
		h.rec.mu.Lock()
		for _, b := range h.rec.begun {
			if b.ID == row.ID && (b.RemoteIP != tc.ip || b.RemotePort != wantPort) {
				t.Errorf("%s: begun with remote %q port %d", tc.name, b.RemoteIP, b.RemotePort)
			}
		}
		h.rec.mu.Unlock()
	}
	c := dial(t, h.addr(t, "denied"))
	io.ReadAll(c)
	if row := h.rec.rowOf(t, "denied"); row.State != socketd.ConnRefused || row.RemoteIP != "127.0.0.0" || row.RemotePort != 0 ||
		strings.Contains(row.Error, "127.0.0.1") || !strings.Contains(row.Error, "127.0.0.0") {
		t.Errorf("refusal recorded with remote %q port %d state %s, saying %q; want 127.0.0.0, no port, refused, no host in the words",
			row.RemoteIP, row.RemotePort, row.State, row.Error)
	}
	// The live views show no more than the history keeps.
	live := dial(t, h.addr(t, "hidden"))
	if _, err := io.ReadFull(live, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	conns := h.a.Connections("hidden")
	if len(conns) != 1 || conns[0].RemoteIP != "" || conns[0].RemotePort != 0 {
		t.Errorf("live connections of hidden: %+v; want one, with no address", conns)
	}
	if st := h.status(t, "hidden"); len(st.Sources) != 1 || st.Sources[0].Source != "a source" || st.Sources[0].Connections != 1 {
		t.Errorf("hidden's sources %+v; want one, unnamed", st.Sources)
	}
	live.Close()
}
