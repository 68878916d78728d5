package store

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// crashEnv makes the test binary crashAfterBegins instead of running the
// tests (see TestMain).
const crashEnv = "SOCKETD_TEST_CRASH_DB"

// crashAfterBegins opens the database at path, begins three connections
// without waiting for their commits (and finishes the second), prints
// their ids and kills its own process before the writer can commit them:
// a daemon dying between accepting connections and recording them.
func crashAfterBegins(path string) {
	db, err := Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	db.hist.lazyDelay = time.Hour // nothing commits but a waited-for write
	for i := range 3 {
		c := &socketd.Connection{Socket: "crash", RemoteIP: "192.0.2.7", RemotePort: 40000 + i,
			LocalIP: "127.0.0.1", LocalPort: 7}
		if err := db.BeginConnectionAsync(c, func(error) {}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i == 1 {
			c.State = socketd.ConnExited
			db.FinishConnectionAsync(c, func(error) {})
		}
		fmt.Println(c.ID)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestBeginAsyncSurvivesCrash: rows begun without waiting are in the
// history after a crash of the process that began them, as interrupted, and
// new ids continue after them.
func TestBeginAsyncSurvivesCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	first := &socketd.Connection{Socket: "before"}
	if err := db.BeginConnection(testCtx(t), first); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crashing helper: %v, want killed", err)
	}
	var ids []int64
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("helper printed %q", out)
		}
		ids = append(ids, id)
	}
	if len(ids) != 3 || ids[0] != first.ID+1 {
		t.Fatalf("helper began %v, want three ids after %d", ids, first.ID)
	}
	var committed int
	if err := rawOpen(t, path).QueryRow(`SELECT count(*) FROM connections`).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if committed != 1 {
		t.Fatalf("%d rows committed before the crash, want only the first: the test does not crash in time", committed)
	}

	before := time.Now()
	db = openPath(t, path)
	if n := db.Recovered(); n != 3 {
		t.Errorf("Recovered() = %d, want 3", n)
	}
	for i, id := range ids {
		got := mustGet(t, db, id)
		if got.Socket != "crash" || got.State != socketd.ConnInterrupted || got.Error != recoveredError ||
			got.RemoteIP != "192.0.2.7" || got.RemotePort != 40000+i || got.LocalIP != "127.0.0.1" ||
			got.LocalPort != 7 || got.EndedAt == nil || got.EndedAt.Before(before.Add(-time.Second)) ||
			got.DurationMS == nil {
			t.Errorf("recovered row %d = %+v", id, got)
		}
	}
	next := &socketd.Connection{Socket: "after"}
	if err := db.BeginConnection(testCtx(t), next); err != nil {
		t.Fatal(err)
	}
	if next.ID != ids[2]+1 {
		t.Errorf("next id %d, want %d", next.ID, ids[2]+1)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if cs := begunIn(t, path); len(cs) != 0 {
		t.Errorf("begun file after a clean close holds %v", cs)
	}
}

// TestBeginAsync: a row begun without waiting has its id at once, is in the
// begun file until committed, is committed with the next waited-for write
// (a read waits for it) and then leaves the begun file.
func TestBeginAsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	db.hist.lazyDelay = time.Hour
	done := make(chan error, 1)
	c := &socketd.Connection{Socket: "async", RemoteIP: "2001:db8::1", RemotePort: 1234}
	if err := db.BeginConnectionAsync(c, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if c.ID != 1 || c.State != socketd.ConnRunning || c.StartedAt.IsZero() {
		t.Fatalf("begun %+v, want id 1, running, started", c)
	}
	select {
	case err := <-done:
		t.Fatalf("begin reported (%v) with nothing committed", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := db.r.QueryRow(`SELECT id FROM connections WHERE id = ?`, c.ID).Scan(new(int64)); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("row committed before anyone waited: %v", err)
	}
	cs := begunIn(t, path)
	if len(cs) != 1 || cs[0].ID != c.ID || cs[0].Socket != "async" || cs[0].RemoteIP != "2001:db8::1" ||
		cs[0].RemotePort != 1234 || !cs[0].StartedAt.Equal(c.StartedAt) {
		t.Fatalf("begun file holds %+v, want %+v", cs, c)
	}

	if got := mustGet(t, db, c.ID); got.State != socketd.ConnRunning {
		t.Errorf("read row %+v, want running", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("a read returned before the row it waited for was reported committed")
	}
	if cs := begunIn(t, path); len(cs) != 0 {
		t.Errorf("begun file after the commit holds %+v", cs)
	}
}

// TestBegunLocksDatabase: a second store cannot open a database in use.
func TestBegunLocksDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	if _, err := Open(testCtx(t), path); err == nil || !strings.Contains(err.Error(), "another socketd") {
		t.Fatalf("second Open: %v, want it refused", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	openPath(t, path) // free again
}

// TestBegunSlot: a slot gives back what was put, with strings too long
// for it cut; a torn or empty slot holds nothing.
func TestBegunSlot(t *testing.T) {
	b := &begunFile{m: make([]byte, begunFileSize)}
	long := strings.Repeat("x", 300)
	in := socketd.Connection{ID: begunSlots + 5, Socket: "s", RemoteIP: long, RemotePort: 65535,
		LocalIP: "::1", LocalPort: 1, StartedAt: time.Unix(1700000000, 123).UTC()}
	b.put(&in)
	s := b.slot(in.ID)
	got, ok := decodeSlot(s)
	want := in
	// The socket takes two bytes, the address's length one: the address
	// gets the rest, the local address nothing.
	want.RemoteIP = long[:begunSlotSize-slotStrings-2-1]
	want.LocalIP = ""
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("slot gave %+v, %v; want %+v", got, ok, want)
	}
	s[begunSlotSize-1] ^= 1 // torn
	if _, ok := decodeSlot(s); ok {
		t.Error("a torn slot decoded")
	}
	if _, ok := decodeSlot(make([]byte, begunSlotSize)); ok {
		t.Error("an empty slot decoded")
	}
	b.put(&in)
	b.drop(in.ID + 1) // another id: keeps it
	if _, ok := decodeSlot(s); !ok {
		t.Error("drop of another id emptied the slot")
	}
	b.drop(in.ID)
	if _, ok := decodeSlot(s); ok {
		t.Error("a dropped slot decoded")
	}
}

// begunIn reads the connections the begun file of the database at path
// holds, as the next open would.
func begunIn(t *testing.T, path string) []socketd.Connection {
	t.Helper()
	buf, err := os.ReadFile(path + ".begun")
	if err != nil {
		t.Fatal(err)
	}
	var cs []socketd.Connection
	for off := 0; off+begunSlotSize <= len(buf); off += begunSlotSize {
		if c, ok := decodeSlot(buf[off : off+begunSlotSize]); ok {
			cs = append(cs, c)
		}
	}
	return cs
}

// openPath opens the database at path and closes it when the test ends,
// unless the test has closed it.
func openPath(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
