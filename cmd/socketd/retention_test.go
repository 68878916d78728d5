package main

import (
	"slices"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestHistoryRetention: with --history-max-rows and --history-max-age the
// daemon prunes its history as it starts and then every minute (every
// 20 ms here); it keeps the newest rows, and none too old.
func TestHistoryRetention(t *testing.T) {
	dir := t.TempDir()
	m, c := openMain(t, dir)
	port := testhandler.FreePort(t)
	if _, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hello", testhandler.Hello, port)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		testhandler.Answer(t, port)
	}
	waitConnection(t, c, socketd.ConnectionFilter{Limit: 1}, socketd.ConnExited)
	if err := m.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	// Started again with a bound of three rows: the two oldest go at once.
	defer func(d time.Duration) { pruneInterval = d }(pruneInterval)
	pruneInterval = 20 * time.Millisecond
	m, c = openMain(t, dir, "--history-max-rows", "3", "--history-max-age", "1h")
	waitHistory(t, c, "the history pruned to three rows at the start", []int64{5, 4, 3})
	// Then as it goes: by count, and by age, a row older than an hour.
	for range 2 {
		testhandler.Answer(t, port)
	}
	waitHistory(t, c, "the history pruned to three rows again", []int64{7, 6, 5})
	old := &socketd.Connection{Socket: "hello", State: socketd.ConnExited, StartedAt: time.Now().Add(-2 * time.Hour)}
	if err := m.DB.BeginConnection(ctxT(t), old); err != nil {
		t.Fatal(err)
	}
	// Its id, the newest, pushes 5 out of the newest three ids, and its
	// age takes it.
	waitHistory(t, c, "a row older than an hour pruned", []int64{7, 6})
}

// waitHistory waits until the history's ids are want, newest first.
func waitHistory(t *testing.T, c *api.Client, what string, want []int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs, _, err := c.ListConnections(ctxT(t), socketd.ConnectionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, conn := range cs {
			ids = append(ids, conn.ID)
		}
		if slices.Equal(ids, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: ids %v, want %v", what, ids, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
