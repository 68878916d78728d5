package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotifiesSystemd: run as a Type=notify service, socketd says READY=1
// once its API answers, RELOADING=1 and READY=1 around a SIGHUP, and
// STOPPING=1 on SIGTERM.
func TestNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	next := func(what string) string {
		t.Helper()
		sock.SetReadDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, 4096)
		n, err := sock.Read(b)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return string(b[:n])
	}
	d := startDaemonWith(t, filepath.Join(dir, "data"), func(cmd *exec.Cmd) {
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sockPath)
	})
	ready := next("READY=1")
	if !strings.HasPrefix(ready, "READY=1\nSTATUS=serving; API on http://"+d.addr) {
		t.Fatalf("first notification %q", ready)
	}
	// Ready means the API answers.
	if err := d.client(t, filepath.Join(dir, "data")).Health(ctxT(t)); err != nil {
		t.Fatalf("ready, but the API does not answer: %v", err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if got := next("RELOADING=1"); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q", got)
	}
	if got := next("READY=1 after the reload"); !strings.HasPrefix(got, "READY=1\n") {
		t.Errorf("after the reload: %q", got)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := next("STOPPING=1"); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("on SIGTERM: %q", got)
	}
}
