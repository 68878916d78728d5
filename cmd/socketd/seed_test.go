package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/seed"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestSeedUnitsImported: the seed's Hello World units, imported as they are
// (only the script's path differs, as /opt is not the test's to write),
// serve Hello World on port 13063 under a dynamic user.
func TestSeedUnitsImported(t *testing.T) {
	testhandler.RequireRoot(t) // DynamicUser
	if ln, err := net.Listen("tcp", ":13063"); err != nil {
		testhandler.Require(t, "port 13063 free")
	} else {
		ln.Close()
	}
	// Not in /tmp, which the handler has of its own.
	dir, err := os.MkdirTemp("/dev/shm", "socketd-seed-")
	if err != nil {
		testhandler.Require(t, "/dev/shm")
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "helloworld.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"Hello World\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, c := openMain(t, t.TempDir())
	units := seed.SocketUnit + strings.Replace(seed.ServiceUnit, seed.Script, script, 1)
	res, err := c.Import(ctxT(t), units, api.ImportOptions{Name: "octoi-helloworld"})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Items[0]
	if !s.DynamicUser || !s.IgnoreExitStatus || s.Stderr != socketd.StderrNull || s.Status == nil ||
		s.Status.State != socketd.SocketListening {
		t.Fatalf("imported %+v, status %+v", s, s.Status)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:13063", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ATZ\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(conn); err != nil || string(got) != "Hello World\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	conn.Close() // so that socketd need not linger for the row to end
	row := waitConnection(t, c, socketd.ConnectionFilter{Socket: "octoi-helloworld", Limit: 1}, socketd.ConnExited)
	if row.UID == nil || *row.UID < 62000 || *row.UID > 62099 {
		t.Errorf("row %+v: no dynamic uid", row)
	}
}
