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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

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
	if err := b.put(&in); err != nil {
		t.Fatal(err)
	}
	s := b.slot(in.ID)
	got, void, ok := decodeSlot(s)
	want := in
	// The socket takes two bytes, the address's length one: the address
	// gets the rest, the local address nothing.
	want.RemoteIP = long[:slotIDFlags-slotStrings-2-1]
	want.LocalIP = ""
	if !ok || void || !reflect.DeepEqual(got, want) {
		t.Fatalf("slot gave %+v, void %v, %v; want %+v", got, void, ok, want)
	}
	next := in
	next.ID += begunSlots
	if err := b.put(&next); !errors.Is(err, errBegunFull) {
		t.Errorf("put over a row not committed: %v, want errBegunFull", err)
	}
	s[begunSlotSize-1] ^= 1 // torn
	if _, _, ok := decodeSlot(s); ok {
		t.Error("a torn slot decoded")
	}
	if _, _, ok := decodeSlot(make([]byte, begunSlotSize)); ok {
		t.Error("an empty slot decoded")
	}

	if err := b.put(&in); err == nil {
		t.Error("put over a torn slot: want errBegunFull (it may be a row)")
	}
	clear(s)
	if err := b.put(&in); err != nil {
		t.Fatal(err)
	}
	b.void(in.ID + 1) // another id: keeps it
	b.drop(in.ID + 1)
	if _, void, ok := decodeSlot(s); !ok || void {
		t.Error("void or drop of another id changed the slot")
	}
	b.void(in.ID)
	if got, void, ok := decodeSlot(s); !ok || !void || got.ID != in.ID {
		t.Errorf("a void slot gave %+v, void %v, %v", got, void, ok)
	}
	if err := b.put(&next); err != nil {
		t.Errorf("put over a void slot: %v", err)
	}
	b.drop(next.ID)
	if _, _, ok := decodeSlot(s); ok {
		t.Error("a dropped slot decoded")
	}
	if err := b.put(&in); err != nil {
		t.Errorf("put over a dropped slot: %v", err)
	}

	// A unix socket's peer and a dynamic user, 0 included.
	b.drop(in.ID)
	pid, uid, zero := 4321, 61184, 0
	unixConn := socketd.Connection{ID: 7, Socket: "u", StartedAt: in.StartedAt,
		PeerPID: &pid, PeerUID: &zero, PeerGID: &zero, UID: &uid}
	if err := b.put(&unixConn); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := decodeSlot(b.slot(7)); !ok || !reflect.DeepEqual(got, unixConn) {
		t.Errorf("slot gave %+v, %v; want %+v", got, ok, unixConn)
	}
	// Each field in its place: a peer uid, gid and dynamic uid all differ.
	b.drop(7)
	puid, pgid := 1000, 1001
	unixConn.PeerUID, unixConn.PeerGID = &puid, &pgid
	if err := b.put(&unixConn); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := decodeSlot(b.slot(7)); !ok || !reflect.DeepEqual(got, unixConn) {
		t.Errorf("slot gave %+v, %v; want %+v", got, ok, unixConn)
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
	cs, _ := begunRows(buf)
	return cs
}

// setWritable makes the writer's connection refuse writes, or take them
// again: SQLite then fails every transaction as a full or read-only disk
// would.
func setWritable(t *testing.T, db *DB, writable bool) {
	t.Helper()
	q := "PRAGMA query_only = 1"
	if writable {
		q = "PRAGMA query_only = 0"
	}
	err := db.hist.raw(testCtx(t), func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(q, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFailedCommitRetried: rows begun without waiting whose transaction
// fails stay in the begun file and are retried until they are committed;
// meanwhile new rows are refused, so that no handler starts that might stay
// unrecorded.
func TestFailedCommitRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	setWritable(t, db, false)
	begun, finished := make(chan error, 1), make(chan error, 1)
	a := &socketd.Connection{Socket: "retried"}
	if err := db.BeginConnectionAsync(a, func(err error) { begun <- err }); err != nil {
		t.Fatal(err)
	}
	a.State = socketd.ConnExited
	db.FinishConnectionAsync(a, func(err error) { finished <- err })

	// Rows begun until the writer has met the failure join the retry.
	accepted := []int64{a.ID}
	var refused error
	deadline := time.Now().Add(10 * time.Second)
	for refused == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		c := &socketd.Connection{Socket: "more"}
		if refused = db.BeginConnectionAsync(c, func(error) {}); refused == nil {
			accepted = append(accepted, c.ID)
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "history cannot be written") {
		t.Fatalf("begin while the history fails: %v, want it refused", refused)
	}
	select {
	case err := <-begun:
		t.Fatalf("begin reported (%v) while its commit fails", err)
	default:
	}
	var held []int64
	for _, c := range begunIn(t, path) {
		held = append(held, c.ID)
	}
	slices.Sort(held)
	if !slices.Equal(held, accepted) {
		t.Fatalf("begun file holds %v, want %v", held, accepted)
	}
	// Reads still work, and see what is committed.
	if _, err := db.GetConnection(testCtx(t), a.ID); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Fatalf("read while failing: %v, want not found", err)
	}

	setWritable(t, db, true)
	for _, ch := range []chan error{begun, finished} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("after the disk recovered: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the failed rows were not retried")
		}
	}
	if got := mustGet(t, db, a.ID); got.State != socketd.ConnExited {
		t.Errorf("row %+v, want exited", got)
	}
	for _, id := range accepted[1:] {
		if got := mustGet(t, db, id); got.State != socketd.ConnRunning {
			t.Errorf("row %+v, want running", got)
		}
	}
	if cs := begunIn(t, path); len(cs) != 0 {
		t.Errorf("begun file holds %+v after the retry", cs)
	}
	last := accepted[len(accepted)-1]
	b := &socketd.Connection{Socket: "after"}
	if err := db.BeginConnectionAsync(b, func(error) {}); err != nil || b.ID != last+1 {
		t.Errorf("begin after recovery: id %d, %v; want %d", b.ID, err, last+1)
	}
}

// TestCloseWhileFailing: Close reports the rows it could not commit as
// failed and leaves them in the begun file, from which the next Open
// recovers them.
func TestCloseWhileFailing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	setWritable(t, db, false)
	begun := make(chan error, 1)
	a := &socketd.Connection{Socket: "kept"}
	if err := db.BeginConnectionAsync(a, func(err error) { begun <- err }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-begun; err == nil {
		t.Fatal("a row Close could not commit was reported committed")
	}
	db = openPath(t, path)
	if got := mustGet(t, db, a.ID); got.State != socketd.ConnInterrupted || got.Error != recoveredError {
		t.Errorf("row after reopening: %+v, want it recovered", got)
	}
}

// TestWithdrawnIDNotReused: the id of a row withdrawn before its commit is
// never handed out again, across a restart too, though no row holds it.
func TestWithdrawnIDNotReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	db := openPath(t, path)
	a := &socketd.Connection{Socket: "kept"}
	if err := db.BeginConnection(testCtx(t), a); err != nil {
		t.Fatal(err)
	}
	sizes, release := holdWriter(db)
	held := make(chan error, 1)
	go func() { held <- db.BeginConnection(testCtx(t), &socketd.Connection{Socket: "held"}) }()
	<-sizes
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	if err := db.BeginConnection(ctx, &socketd.Connection{Socket: "withdrawn"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("withdrawn begin: %v", err)
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	// The held row is a.ID+1, the withdrawn one a.ID+2. Delete the held
	// one, so that no row is left above a.
	if _, err := db.w.Exec(`DELETE FROM connections WHERE id = ?`, a.ID+1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openPath(t, path)
	c := &socketd.Connection{Socket: "next"}
	if err := db.BeginConnection(testCtx(t), c); err != nil {
		t.Fatal(err)
	}
	if c.ID != a.ID+3 {
		t.Errorf("next id %d, want %d: ids handed out before were given again", c.ID, a.ID+3)
	}
}

// TestFinishOfLostRowWritesNothing: a row that fails alone (another program
// wrote its id) fails its begin, and its finish writes nothing rather than
// change the other program's row.
func TestFinishOfLostRowWritesNothing(t *testing.T) {
	db := openTest(t)
	if _, err := db.w.Exec(`INSERT INTO connections (id, socket, state, started_at) VALUES (1, 'other', 'running', 0)`); err != nil {
		t.Fatal(err)
	}
	begun, finished := make(chan error, 1), make(chan error, 1)
	c := &socketd.Connection{Socket: "lost"}
	if err := db.BeginConnectionAsync(c, func(err error) { begun <- err }); err != nil || c.ID != 1 {
		t.Fatalf("begin: id %d, %v; want the taken id 1", c.ID, err)
	}
	c.State = socketd.ConnExited
	db.FinishConnectionAsync(c, func(err error) { finished <- err })
	if err := <-begun; err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Errorf("begin of a taken id: %v, want the constraint", err)
	}
	if err := <-finished; socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("finish of the lost row: %v, want not found", err)
	}
	if got := mustGet(t, db, 1); got.Socket != "other" || got.State != socketd.ConnRunning {
		t.Errorf("the other program's row became %+v", got)
	}
	if cs := begunIn(t, db.path); len(cs) != 0 {
		t.Errorf("begun file holds %+v, want the lost row void", cs)
	}
	next := &socketd.Connection{Socket: "next"}
	if err := db.BeginConnection(testCtx(t), next); err != nil || next.ID != 2 {
		t.Errorf("next begin: id %d, %v; want 2", next.ID, err)
	}
}

// TestRecoveredRowKeepsCredentials: a row recovered from the begun file
// keeps a unix peer's credentials and the dynamic uid.
func TestRecoveredRowKeepsCredentials(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	pid, uid, peerGID, gid := 4321, 1000, 1001, 61184
	c := socketd.Connection{ID: 100, Socket: "u", StartedAt: time.Now().UTC(),
		PeerPID: &pid, PeerUID: &uid, PeerGID: &peerGID, UID: &gid}
	if n, err := recoverBegun(ctx, db.w, []socketd.Connection{c}, c.ID); err != nil || n != 1 {
		t.Fatalf("recoverBegun = %d, %v", n, err)
	}
	got, err := db.GetConnection(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != socketd.ConnInterrupted || !reflect.DeepEqual(got.PeerPID, c.PeerPID) ||
		!reflect.DeepEqual(got.PeerGID, c.PeerGID) || !reflect.DeepEqual(got.UID, c.UID) ||
		!reflect.DeepEqual(got.PeerUID, c.PeerUID) {
		t.Errorf("recovered row %+v", got)
	}
}
