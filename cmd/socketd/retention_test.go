package main

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestHistoryRetention: with --history-max-rows the daemon prunes its
// history as it starts and then every minute; it keeps the newest rows.
func TestHistoryRetention(t *testing.T) {
	dir := t.TempDir()
	m, c := openMain(t, dir)
	port := testhandler.FreePort(t)
	if _, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hello", testhandler.Hello, port)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		conn, err := net.DialTimeout("tcp", port, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadAll(conn)
		conn.Close()
	}
	waitConnection(t, c, socketd.ConnectionFilter{Limit: 1}, socketd.ConnExited)
	if err := m.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	// Started again with a bound of three rows: the two oldest go.
	_, c = openMain(t, dir, "--history-max-rows", "3")
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs, _, err := c.ListConnections(ctxT(t), socketd.ConnectionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 3 && cs[0].ID == 5 && cs[2].ID == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history after pruning to three rows: %+v", cs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
