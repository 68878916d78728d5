package testhandler

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// Socket returns an enabled definition of socket name, listening on listen,
// whose handler is the running test binary acting as handler (its TestMain
// must call Main).
func Socket(name, handler string, listen ...string) socketd.Socket {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	s := socketd.NewSocket()
	s.Name = name
	s.Listen = listen
	s.Command = []string{exe}
	s.Environment = map[string]string{Env: handler}
	return s
}

// FreePort returns a loopback address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StrictEnv, when set (CI sets it), turns a test's skip for something the
// machine lacks into a failure, so that nothing silently stops being tested.
const StrictEnv = "SOCKETD_TEST_STRICT"

// RequireRoot skips t unless it runs as root, or fails it under StrictEnv.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, "root")
	}
}

// Require skips t, which needs what, missing here, or fails it under
// StrictEnv.
func Require(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(StrictEnv) != "" {
		t.Fatalf("this test needs %s (%s forbids skipping it)", what, StrictEnv)
	}
	t.Skipf("this test needs %s", what)
}

// Answer connects to the TCP address addr and returns all the handler
// writes until it ends the connection, failing t if that takes longer than
// ten seconds.
func Answer(t testing.TB, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read from %s: %v (after %q)", addr, err, b)
	}
	return string(b)
}
