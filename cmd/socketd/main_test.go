package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/apitest"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestMain lets the test binary act as a handler (testhandler) or as the
// daemon itself (SOCKETD_TEST_DAEMON), so tests can kill a real daemon.
func TestMain(m *testing.M) {
	testhandler.Main()
	if os.Getenv("SOCKETD_TEST_DAEMON") == "1" {
		if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "socketd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// openMain runs the daemon in this process on 127.0.0.1:0, with flags
// besides, and returns it with a client holding the admin token.
func openMain(t *testing.T, dataDir string, flags ...string) (*Main, *api.Client) {
	t.Helper()
	// A dynamic user range of its own: a socketd kills whatever runs as
	// its uids, and the tests of other packages run at the same time.
	cfg, err := ParseConfig(append([]string{"--api-addr", "127.0.0.1:0", "--data-dir", dataDir, "--stop-timeout", "2s",
		"--dynamic-users", "62000-62099"}, flags...), os.Getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, Logger: cfg.NewLogger(testWriter{t})}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Open(ctx); err != nil {
		m.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, newClient(t, m.API.Addr(), readToken(t, dataDir))
}

// newClient returns a client of the daemon at addr whose every request and
// response is held to openapi.yaml.
func newClient(t *testing.T, addr, token string) *api.Client {
	return api.NewClient("http://"+addr, token, api.WithHTTPClient(apitest.HTTPClient(t)))
}

func readToken(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitConnection polls the history until the connection matching f is in
// state want. The API has no event stream yet, so polling it is.
func waitConnection(t *testing.T, c *api.Client, f socketd.ConnectionFilter, want socketd.ConnectionState) socketd.Connection {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		items, _, err := c.ListConnections(ctxT(t), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) > 0 && items[0].State == want {
			return items[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %+v never reached state %s: %+v", f, want, items)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHelloWorldWithoutSleep is the seed's example as a user meets it: a
// handler that writes "Hello World" and exits at once, while the client has
// sent data it never reads. Every byte written must arrive, and the history
// must record the connection.
func TestHelloWorldWithoutSleep(t *testing.T) {
	dir := t.TempDir()
	_, c := openMain(t, dir)
	ctx := ctxT(t)
	s, created, err := c.PutSocket(ctx, testhandler.Socket("hello", testhandler.Hello, "127.0.0.1:0"))
	if err != nil || !created {
		t.Fatalf("put: created=%v err=%v", created, err)
	}
	if s.Status == nil || s.Status.State != socketd.SocketListening || len(s.Status.Listening) != 1 {
		t.Fatalf("status = %+v", s.Status)
	}
	addr := s.Status.Listening[0]
	sent := bytes.Repeat([]byte("the terminal server talks first\n"), 2048)
	for i := range 20 {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		wrote := make(chan error, 1)
		go func() { _, err := conn.Write(sent); wrote <- err }()
		got, err := io.ReadAll(conn)
		if err != nil || string(got) != "Hello World\n" {
			t.Fatalf("connection %d: got %q, %v", i, got, err)
		}
		if err := <-wrote; err != nil {
			t.Fatalf("connection %d: the client could not send: %v", i, err)
		}
		conn.Close()
	}
	row := waitConnection(t, c, socketd.ConnectionFilter{Socket: "hello", Limit: 1}, socketd.ConnExited)
	if row.ExitCode == nil || *row.ExitCode != 0 || row.BytesOut != int64(len("Hello World\n")) || row.PID == 0 {
		t.Errorf("history row = %+v", row)
	}
	if row.BytesIn != int64(len(sent)) {
		t.Errorf("bytes_in = %d, want the %d the client sent", row.BytesIn, len(sent))
	}
	if row.RemoteIP != "127.0.0.1" || row.LocalPort == 0 || row.EndedAt == nil || row.DurationMS == nil {
		t.Errorf("history row = %+v", row)
	}
	all, _, err := c.ListConnections(ctx, socketd.ConnectionFilter{Socket: "hello", Limit: 100})
	if err != nil || len(all) != 20 {
		t.Fatalf("history has %d rows, %v; want 20", len(all), err)
	}
	st, err := c.GetSocket(ctx, "hello")
	if err != nil || st.Status == nil || st.Status.Accepted != 20 {
		t.Fatalf("socket status after 20 connections = %+v, %v", st.Status, err)
	}
}

// TestDataDirAndToken checks the files a first start leaves behind and that
// the database holds only a hash of the token. A data dir open to others is
// tightened.
func TestDataDirAndToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "socketd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, c := openMain(t, dir)
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, m.Config.TokenPath(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, fi.Mode(), err, want)
		}
	}
	if _, err := c.ListSockets(ctxT(t)); err != nil {
		t.Fatalf("the token in admin.token is refused: %v", err)
	}
	token := readToken(t, dir)
	if len(token) < 40 {
		t.Errorf("token %q is short", token)
	}
	m.Close(ctxT(t))
	for _, name := range []string{"socketd.db", "socketd.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && bytes.Contains(b, []byte(token)) {
			t.Errorf("%s holds the token in clear", name)
		}
	}
}

// TestTokenSurvivesRestartAndRotates: a restart keeps the token; deleting
// admin.token and restarting replaces it, and the old one stops working.
func TestTokenSurvivesRestartAndRotates(t *testing.T) {
	dir := t.TempDir()
	m, _ := openMain(t, dir)
	first := readToken(t, dir)
	m.Close(ctxT(t))

	m, c := openMain(t, dir)
	if readToken(t, dir) != first {
		t.Fatal("a restart changed the token")
	}
	if _, err := c.ListSockets(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	m.Close(ctxT(t))

	os.Remove(filepath.Join(dir, "admin.token"))
	m, c = openMain(t, dir)
	second := readToken(t, dir)
	if second == first {
		t.Fatal("the token was not rotated")
	}
	if _, err := c.ListSockets(ctxT(t)); err != nil {
		t.Fatalf("new token refused: %v", err)
	}
	old := newClient(t, m.API.Addr(), first)
	if _, err := old.ListSockets(ctxT(t)); socketd.ErrorCode(err) != socketd.CodeUnauthorized {
		t.Fatalf("old token after rotation: %v, want unauthorized", err)
	}
	m.Close(ctxT(t))

	// A file whose token the database does not know (a crash mid-rotation,
	// a restored backup) is replaced rather than trusted.
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, c = openMain(t, dir)
	if tok := readToken(t, dir); tok == "stale" || tok == second {
		t.Fatalf("token after a stale file = %q", tok)
	}
	if _, err := c.ListSockets(ctxT(t)); err != nil {
		t.Fatalf("token replacing a stale file refused: %v", err)
	}
}

// TestAPIGuards checks the guards as curl meets them: no token, a wrong
// token, a foreign Host header, and the open health check.
func TestAPIGuards(t *testing.T) {
	m, _ := openMain(t, t.TempDir())
	base := "http://" + m.API.Addr()
	token := readToken(t, m.Config.DataDir)
	hc := apitest.HTTPClient(t)
	cases := []struct {
		path, auth, host string
		want             int
		// offSpec marks a request the spec rejects; its response is
		// still held to the spec.
		offSpec bool
	}{
		{"/healthz", "", "", http.StatusOK, false},
		{"/v1/sockets", "", "", http.StatusUnauthorized, true},
		{"/v1/sockets", "Bearer wrong", "", http.StatusUnauthorized, false},
		{"/v1/sockets", "Bearer " + token, "", http.StatusOK, false},
		{"/v1/sockets", "Bearer " + token, "localhost", http.StatusOK, false},
		{"/v1/sockets", "Bearer " + token, "attacker.example", http.StatusForbidden, false},
		{"/healthz", "", "attacker.example:7780", http.StatusForbidden, false},
	}
	for _, tc := range cases {
		ctx := ctxT(t)
		if tc.offSpec {
			ctx = apitest.OffSpec(ctx)
		}
		req, err := http.NewRequestWithContext(ctx, "GET", base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s auth=%q host=%q: status %d, want %d", tc.path, tc.auth, tc.host, resp.StatusCode, tc.want)
		}
		if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: error with content type %q", tc.path, resp.Header.Get("Content-Type"))
		}
	}
}

// daemon is socketd running as a child process, so that a test can kill it.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
}

var startedRE = regexp.MustCompile(`api=http://(\S+)`)

// startDaemon runs the test binary as socketd on 127.0.0.1:0 and waits until
// it logs its API address.
func startDaemon(t *testing.T, dataDir string) *daemon {
	t.Helper()
	return startDaemonWith(t, dataDir, nil)
}

// startDaemonWith is startDaemon with setup, if not nil, applied to the
// command first.
func startDaemonWith(t *testing.T, dataDir string, setup func(*exec.Cmd)) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--api-addr", "127.0.0.1:0", "--data-dir", dataDir, "--stop-timeout", "2s")
	cmd.Env = append(os.Environ(), "SOCKETD_TEST_DAEMON=1")
	if setup != nil {
		setup(cmd)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logText())
		}
	})
	select {
	case d.addr = <-addr:
	case <-d.done:
		t.Fatalf("daemon exited at start:\n%s", d.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not start:\n%s", d.logText())
	}
	// The log tells the operator where the token is.
	if want := filepath.Join(dataDir, "admin.token"); !strings.Contains(d.logText(), want) {
		t.Errorf("the start-up log does not name %s:\n%s", want, d.logText())
	}
	return d
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

func (d *daemon) client(t *testing.T, dataDir string) *api.Client {
	return newClient(t, d.addr, readToken(t, dataDir))
}

// stop sends sig and waits for the daemon to exit.
func (d *daemon) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("exit status %d", code)
		}
		return nil
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit after %v", sig)
		return nil
	}
}

// openHanging connects to addr and waits until the connection's row says
// running, so the handler is alive.
func openHanging(t *testing.T, c *api.Client, addr, socket string) (net.Conn, socketd.Connection) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, waitConnection(t, c, socketd.ConnectionFilter{Socket: socket, Limit: 1}, socketd.ConnRunning)
}

// TestKill9AndRestart kills the daemon with live connections. The restart
// marks their rows interrupted and brings the listeners back.
func TestKill9AndRestart(t *testing.T) {
	dir := t.TempDir()
	addr := testhandler.FreePort(t)
	d := startDaemon(t, dir)
	c := d.client(t, dir)
	if _, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hang", testhandler.Hang, addr)); err != nil {
		t.Fatal(err)
	}
	conn, row := openHanging(t, c, addr, "hang")

	d.cmd.Process.Kill()
	<-d.done
	// The handler dies with its daemon, so the client sees the end.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client after kill -9: %v", err)
	}

	d = startDaemon(t, dir)
	c = d.client(t, dir)
	got, err := c.GetConnection(ctxT(t), row.ID)
	if err != nil || got.State != socketd.ConnInterrupted || got.EndedAt == nil {
		t.Fatalf("row after restart = %+v, %v", got, err)
	}
	s, err := c.GetSocket(ctxT(t), "hang")
	if err != nil || s.Status == nil || s.Status.State != socketd.SocketListening {
		t.Fatalf("socket after restart = %+v, %v", s.Status, err)
	}
	_, again := openHanging(t, c, addr, "hang")
	if again.ID == row.ID {
		t.Fatal("no new connection row after restart")
	}
}

// TestKill9KillsHandlerOfAnotherUser: a handler that runs as another user
// (whose credentials change cleared the parent-death signal, which the new
// process arms again) dies with its daemon too.
func TestKill9KillsHandlerOfAnotherUser(t *testing.T) {
	testhandler.RequireRoot(t)
	dir := t.TempDir()
	addr := testhandler.FreePort(t)
	d := startDaemon(t, dir)
	c := d.client(t, dir)
	s := socketd.NewSocket()
	s.Name = "other"
	s.Listen = []string{addr}
	s.Command = []string{"/bin/sleep", "300"}
	s.User = "nobody"
	if _, _, err := c.PutSocket(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	openHanging(t, c, addr, "other")
	// The running row has no pid yet: find the handler among the daemon's
	// children, once it runs as nobody.
	pid := 0
	for deadline := time.Now().Add(10 * time.Second); pid == 0; {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", d.cmd.Process.Pid))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, p := range strings.Fields(string(b)) {
				status, _ := os.ReadFile("/proc/" + p + "/status")
				if strings.Contains(string(status), "\nUid:\t65534\t") {
					pid, _ = strconv.Atoi(p)
				}
			}
		}
		if pid == 0 && time.Now().After(deadline) {
			t.Fatal("no child of the daemon runs as nobody")
		}
		time.Sleep(10 * time.Millisecond)
	}

	d.cmd.Process.Kill()
	<-d.done
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Gone, or a zombie nobody reaps (this machine's PID 1 may not).
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler %d outlived its daemon: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHandlerHasNoTerminal: socketd started from a terminal (here a
// pseudo-terminal that is its controlling terminal) does not hand it to its
// handlers, which could open it whatever their user.
func TestHandlerHasNoTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testhandler.Require(t, "a pseudo-terminal (/dev/ptmx)")
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	go io.Copy(io.Discard, ptmx) // keep the terminal from filling up

	dir := t.TempDir()
	addr := testhandler.FreePort(t)
	d := startDaemonWith(t, dir, func(cmd *exec.Cmd) {
		cmd.Stdin = pts
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	})
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if f := strings.Fields(string(stat)); err != nil || len(f) < 7 || f[6] == "0" {
		t.Fatalf("the daemon has no controlling terminal: %s", stat)
	}
	c := d.client(t, dir)
	s := socketd.NewSocket()
	s.Name = "tty"
	s.Listen = []string{addr}
	s.Command = []string{"/bin/sh", "-c", `if (exec 3<>/dev/tty) 2>/dev/null; then echo tty; else echo none; fi; cut -d' ' -f7 /proc/$$/stat`}
	if _, _, err := c.PutSocket(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	if out := testhandler.Answer(t, addr); out != "none\n0\n" {
		t.Errorf("handler: %q, want no terminal to open and tty_nr 0", out)
	}
}

// TestSIGTERMStopsHandlersAndRecordsThem: a graceful stop terminates a
// running handler and finishes its row as killed, then exits 0.
func TestSIGTERMStopsHandlersAndRecordsThem(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client(t, dir)
	s, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hang", testhandler.Hang, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	_, row := openHanging(t, c, s.Status.Listening[0], "hang")
	start := time.Now()
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, d.logText())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	d = startDaemon(t, dir)
	got, err := d.client(t, dir).GetConnection(ctxT(t), row.ID)
	if err != nil || got.State != socketd.ConnKilled || got.Signal == "" {
		t.Fatalf("row after graceful stop = %+v, %v", got, err)
	}
}

// TestKillConnectionThroughAPI terminates a running handler with DELETE
// /v1/connections/{id}: the answer is the final row, and the client sees the
// connection end.
func TestKillConnectionThroughAPI(t *testing.T) {
	_, c := openMain(t, t.TempDir())
	s, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hang", testhandler.Hang, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	conn, row := openHanging(t, c, s.Status.Listening[0], "hang")
	got, err := c.KillConnection(ctxT(t), row.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != socketd.ConnKilled || got.Signal != "SIGTERM" || got.EndedAt == nil {
		t.Errorf("killed row = %+v", got)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("client of a killed connection: %v", err)
	}
	if _, err := c.KillConnection(ctxT(t), row.ID); socketd.ErrorCode(err) != socketd.CodeConflict {
		t.Errorf("killing it again: %v, want a conflict", err)
	}
}

// TestPortConflictFailsOnlyThatSocket: a socket whose port is taken is
// failed with the error, while the API and another socket carry on, and it
// recovers by itself once the port is free.
func TestPortConflictFailsOnlyThatSocket(t *testing.T) {
	_, c := openMain(t, t.TempDir())
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	busy, _, err := c.PutSocket(ctxT(t), testhandler.Socket("busy", testhandler.Hello, held.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if busy.Status == nil || busy.Status.State != socketd.SocketFailed || !strings.Contains(busy.Status.Error, "address already in use") {
		t.Fatalf("status of the socket whose port is taken = %+v", busy.Status)
	}
	ok, _, err := c.PutSocket(ctxT(t), testhandler.Socket("ok", testhandler.Hello, "127.0.0.1:0"))
	if err != nil || ok.Status.State != socketd.SocketListening {
		t.Fatalf("the other socket: %+v, %v", ok.Status, err)
	}
	if got := testhandler.Answer(t, ok.Status.Listening[0]); got != "Hello World\n" {
		t.Fatalf("the other socket answered %q", got)
	}
	held.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.GetSocket(ctxT(t), "busy")
		if err != nil {
			t.Fatal(err)
		}
		if s.Status.State == socketd.SocketListening {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket never recovered: %+v", s.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := testhandler.Answer(t, held.Addr().String()); got != "Hello World\n" {
		t.Fatalf("the recovered socket answered %q", got)
	}
}

// TestRealAnswersMatchSpec drives what the other tests leave out against
// the real activator and store, so that the daemon's real answers are held
// to openapi.yaml too: a handler that fails and its row, a captured
// standard error, a handler that cannot be started, filters and pages of
// the history, a disabled socket, a delete and what is not found.
func TestRealAnswersMatchSpec(t *testing.T) {
	_, c := openMain(t, t.TempDir())
	ctx := ctxT(t)
	start := time.Now().Add(-time.Second)

	fail, _, err := c.PutSocket(ctx, testhandler.Socket("fail", testhandler.Exit3, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	var failed socketd.Connection
	for range 2 {
		testhandler.Answer(t, fail.Status.Listening[0])
		failed = waitConnection(t, c, socketd.ConnectionFilter{Socket: "fail", Limit: 1}, socketd.ConnFailed)
	}
	if failed.ExitCode == nil || *failed.ExitCode != 3 || failed.Signal != "" {
		t.Errorf("row of a handler that exited 3 = %+v", failed)
	}
	page, next, err := c.ListConnections(ctx, socketd.ConnectionFilter{
		Socket: "fail", State: socketd.ConnFailed, RemoteIP: "127.0.0.1", Since: start, Until: time.Now().Add(time.Minute), Limit: 1,
	})
	if err != nil || len(page) != 1 || next == "" {
		t.Fatalf("first page = %+v, next %q, %v", page, next, err)
	}
	page, next, err = c.ListConnections(ctx, socketd.ConnectionFilter{
		Socket: "fail", State: socketd.ConnFailed, RemoteIP: "127.0.0.1", Since: start, Until: time.Now().Add(time.Minute), Limit: 1, Cursor: next,
	})
	if err != nil || len(page) != 1 || next != "" {
		t.Fatalf("last page = %+v, next %q, %v", page, next, err)
	}

	loud, _, err := c.PutSocket(ctx, testhandler.Socket("loud", testhandler.Stderr, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if got := testhandler.Answer(t, loud.Status.Listening[0]); got != "done\n" {
		t.Fatalf("the stderr handler answered %q", got)
	}
	row := waitConnection(t, c, socketd.ConnectionFilter{Socket: "loud", Limit: 1}, socketd.ConnExited)
	if log, err := c.ConnectionLog(ctx, row.ID); err != nil || string(log) != "hello stderr\n" {
		t.Errorf("log = %q, %v", log, err)
	}
	if log, err := c.ConnectionLog(ctx, failed.ID); err != nil || len(log) != 0 {
		t.Errorf("log of a silent handler = %q, %v", log, err)
	}

	// A handler removed after its definition was saved cannot be started.
	exe := filepath.Join(t.TempDir(), "gone")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	gone := testhandler.Socket("gone", testhandler.Hello, "127.0.0.1:0")
	gone.Command = []string{exe}
	if gone, _, err = c.PutSocket(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	testhandler.Answer(t, gone.Status.Listening[0])
	row = waitConnection(t, c, socketd.ConnectionFilter{Socket: "gone", Limit: 1}, socketd.ConnFailed)
	if row.Error == "" || row.PID != 0 {
		t.Errorf("row of a handler that could not start = %+v", row)
	}
	if _, err := c.GetSocket(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	off, err := c.PatchSocket(ctx, "fail", map[string]any{"enabled": false})
	if err != nil || off.Status == nil || off.Status.State != socketd.SocketDisabled {
		t.Fatalf("disabled socket = %+v, %v", off.Status, err)
	}
	if _, err := c.ListSockets(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSocket(ctx, "fail"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSocket(ctx, "fail"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a deleted socket: %v, want not found", err)
	}
	if _, err := c.GetConnection(ctx, failed.ID); err != nil {
		t.Errorf("the row of a deleted socket: %v", err)
	}
	if _, err := c.GetConnection(ctx, 1<<40); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a connection that never was: %v, want not found", err)
	}
}
