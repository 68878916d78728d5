package activator_test

import (
	"io"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestStandardStreams: with standard_input null the handler gets the
// connection as fd 3, as sd_listen_fds(3) takes it (go-systemd checks
// LISTEN_PID against the handler's own pid), and /dev/null as stdin;
// standard_output sends stdout to the log or to /dev/null; stderr inherit
// follows stdout.
func TestStandardStreams(t *testing.T) {
	fd3 := handlerSocket("fd3", testhandler.SDListen)
	fd3.StandardInput = socketd.StdinNull
	fd3.StandardOutput = socketd.StdoutNull
	logged := handlerSocket("logged", testhandler.Hello)
	logged.StandardOutput = socketd.StdoutLog
	nowhere := handlerSocket("nowhere", testhandler.Hello)
	nowhere.StandardOutput = socketd.StdoutNull
	inherit := handlerSocket("inherit", testhandler.Stderr)
	inherit.Stderr = socketd.StderrInherit
	mustValid(t, fd3, logged, nowhere, inherit)
	h := start(t, activator.Config{}, fd3, logged, nowhere, inherit)

	t.Run("fd3", func(t *testing.T) {
		c := dial(t, h.addr(t, "fd3"))
		if got := readLine(t, c); got != "name=connection stdin=0" {
			t.Fatalf("handler said %q", got)
		}
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got != "ping" {
			t.Errorf("echo %q", got)
		}
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.ReadAll(c)
		if row := h.rec.rowOf(t, "fd3"); row.State != socketd.ConnExited || row.BytesIn != 5 {
			t.Errorf("row %s (%s), %d bytes in", row.State, row.Error, row.BytesIn)
		}
	})
	for _, tc := range []struct{ name, out, log string }{
		{"logged", "", "Hello World\n"},
		{"nowhere", "", ""},
		{"inherit", "hello stderr\ndone\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := roundTrip(t, h.addr(t, tc.name), ""); out != tc.out {
				t.Errorf("client read %q, want %q", out, tc.out)
			}
			row := h.rec.rowOf(t, tc.name)
			if row.State != socketd.ConnExited || string(row.Log) != tc.log {
				t.Errorf("row %s (%s), log %q; want exited, log %q", row.State, row.Error, row.Log, tc.log)
			}
		})
	}
}
