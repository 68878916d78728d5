package main

import (
	"io"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestRunningRowsHaveTheirPid: the history's running rows, which the store
// holds without a pid until they end, come from the API with the handler's
// pid and the bytes so far, as socketctl status shows them.
func TestRunningRowsHaveTheirPid(t *testing.T) {
	_, c := openMain(t, t.TempDir())
	port := testhandler.FreePort(t)
	if _, _, err := c.PutSocket(ctxT(t), testhandler.Socket("echo", testhandler.Echo, port)); err != nil {
		t.Fatal(err)
	}
	conn, _ := openHanging(t, c, port, "echo")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("hello\n"))
	if _, err := io.ReadFull(conn, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.ListConnections(ctxT(t), socketd.ConnectionFilter{State: socketd.ConnRunning})
	if err != nil || len(cs) != 1 || cs[0].PID == 0 || cs[0].BytesIn != 6 || cs[0].BytesOut != 6 {
		t.Fatalf("running rows: %+v, %v; want one with its pid and 6 bytes each way", cs, err)
	}
	one, err := c.GetConnection(ctxT(t), cs[0].ID)
	if err != nil || one.PID != cs[0].PID {
		t.Errorf("the running row alone: %+v, %v", one, err)
	}
}
