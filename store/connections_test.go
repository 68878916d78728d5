package store

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/migrations"
)

func TestConnectionRoundTrip(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	started := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	c := &socketd.Connection{
		Socket: "hello", RemoteIP: "2001:db8::1", RemotePort: 54321,
		LocalIP: "127.0.0.1", LocalPort: 13063, StartedAt: started,
	}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID <= 0 || c.State != socketd.ConnRunning || !c.StartedAt.Equal(started) {
		t.Fatalf("after BeginConnection: id %d, state %q, started %v", c.ID, c.State, c.StartedAt)
	}
	got, err := db.GetConnection(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, *c) {
		t.Errorf("running row\n got %#v\nwant %#v", got, *c)
	}

	ended := started.Add(1500*time.Millisecond + 7)
	exit := 3
	c.State = socketd.ConnFailed
	c.PID = 4242
	c.EndedAt = &ended
	c.ExitCode = &exit
	c.Signal = "SIGTERM"
	c.BytesIn = 1 << 40
	c.BytesOut = 12
	c.Error = "handler said \"no\""
	c.Log = []byte("line 1\nline 2\x00\xff\n")
	if err := db.FinishConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.DurationMS == nil || *c.DurationMS != 1500 {
		t.Errorf("DurationMS %v, want 1500", c.DurationMS)
	}
	got, err = db.GetConnection(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *c
	want.Log = nil // served by ConnectionLog only
	if !reflect.DeepEqual(got, want) {
		t.Errorf("finished row\n got %#v\nwant %#v", got, want)
	}
	log, err := db.ConnectionLog(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(log, c.Log) {
		t.Errorf("log %q, want %q", log, c.Log)
	}
	page, _, err := db.ListConnections(ctx, socketd.ConnectionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || !reflect.DeepEqual(page[0], want) {
		t.Errorf("ListConnections %#v, want [%#v]", page, want)
	}
}

func TestFinishConnectionDefaults(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	c := &socketd.Connection{Socket: "s", PID: 99}
	before := time.Now()
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.StartedAt.Before(before) || c.StartedAt.After(time.Now()) {
		t.Errorf("StartedAt %v not set to now", c.StartedAt)
	}
	// A finish that knows only the id and the outcome: the end is now, the
	// duration comes from the stored start, the pid is kept, exit code 0 is
	// a value, not NULL.
	zero := 0
	fin := &socketd.Connection{ID: c.ID, State: socketd.ConnExited, ExitCode: &zero}
	if err := db.FinishConnection(ctx, fin); err != nil {
		t.Fatal(err)
	}
	if fin.EndedAt == nil || fin.DurationMS == nil || *fin.DurationMS < 0 {
		t.Fatalf("after FinishConnection: ended %v, duration %v", fin.EndedAt, fin.DurationMS)
	}
	got, err := db.GetConnection(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 99 || got.ExitCode == nil || *got.ExitCode != 0 || got.State != socketd.ConnExited ||
		got.EndedAt == nil || !got.EndedAt.Equal(*fin.EndedAt) || *got.DurationMS != *fin.DurationMS {
		t.Errorf("finished row %#v", got)
	}
	if got.EndedAt.Before(got.StartedAt) {
		t.Errorf("ended %v before started %v", got.EndedAt, got.StartedAt)
	}
	log, err := db.ConnectionLog(ctx, c.ID)
	if err != nil || log == nil || len(log) != 0 {
		t.Errorf("log of a connection without one: %q, %v; want empty", log, err)
	}
}

func TestBeginCompleteRow(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	started := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ended := started.Add(time.Millisecond)
	d := int64(1)
	c := &socketd.Connection{
		Socket: "s", State: socketd.ConnRefused, RemoteIP: "192.0.2.7", RemotePort: 1,
		StartedAt: started, EndedAt: &ended, DurationMS: &d, Error: "too many connections", Reason: socketd.ReasonMaxConnections,
		Log: []byte("refused"),
	}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetConnection(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *c
	want.Log = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("refused row\n got %#v\nwant %#v", got, want)
	}
	if log, _ := db.ConnectionLog(ctx, c.ID); string(log) != "refused" {
		t.Errorf("log %q", log)
	}

	// A unix socket's peer, by its credentials; uid and gid 0 are kept.
	pid, zero := 4321, 0
	u := &socketd.Connection{Socket: "u", State: socketd.ConnRunning, StartedAt: started,
		PeerPID: &pid, PeerUID: &zero, PeerGID: &zero}
	if err := db.BeginConnection(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got, err := db.GetConnection(ctx, u.ID); err != nil || !reflect.DeepEqual(got, *u) {
		t.Errorf("unix row\n got %#v (%v)\nwant %#v", got, err, *u)
	}
	// The dynamic user is known once the handler is spawned: the finish
	// records it, and a finish without one keeps it.
	uid := 61184
	f := *u
	f.State, f.EndedAt, f.UID = socketd.ConnExited, &ended, &uid
	if err := db.FinishConnection(ctx, &f); err != nil {
		t.Fatal(err)
	}
	f.UID, f.State, f.Reason = nil, socketd.ConnRefused, socketd.ReasonShuttingDown
	if err := db.FinishConnection(ctx, &f); err != nil {
		t.Fatal(err)
	}
	if got, err := db.GetConnection(ctx, u.ID); err != nil || got.UID == nil || *got.UID != uid || *got.PeerPID != pid ||
		got.Reason != socketd.ReasonShuttingDown {
		t.Errorf("finished unix row %#v (%v), want uid %d", got, err, uid)
	}
}

func TestConnectionErrors(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	_, err := db.GetConnection(ctx, 12345)
	wantCode(t, err, socketd.CodeNotFound)
	_, err = db.ConnectionLog(ctx, 12345)
	wantCode(t, err, socketd.CodeNotFound)
	err = db.FinishConnection(ctx, &socketd.Connection{ID: 12345, State: socketd.ConnExited, Log: []byte("x")})
	wantCode(t, err, socketd.CodeNotFound)

	c := &socketd.Connection{Socket: "s"}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, state := range []socketd.ConnectionState{"", socketd.ConnRunning, "bogus"} {
		f := *c
		f.State = state
		if err := db.FinishConnection(ctx, &f); err == nil {
			t.Errorf("FinishConnection with state %q succeeded", state)
		}
	}
	if err := db.BeginConnection(ctx, &socketd.Connection{Socket: "s", State: "bogus"}); err == nil {
		t.Error("BeginConnection with an unknown state succeeded")
	}
	if err := db.BeginConnection(ctx, nil); err == nil {
		t.Error("BeginConnection(nil) succeeded")
	}
	if err := db.FinishConnection(ctx, nil); err == nil {
		t.Error("FinishConnection(nil) succeeded")
	}
	if got, _ := db.GetConnection(ctx, c.ID); got.State != socketd.ConnRunning {
		t.Errorf("a refused finish changed the row: %#v", got)
	}
}

// TestConcurrentBegin checks the group commit under load: every caller gets
// its own id for its own row, every row is committed, and callers share
// transactions.
func TestConcurrentBegin(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	var txs, biggest atomic.Int64
	db.hist.beforeBatch = func(rs []*request) {
		txs.Add(1)
		for n := int64(len(rs)); ; {
			b := biggest.Load()
			if n <= b || biggest.CompareAndSwap(b, n) {
				break
			}
		}
	}
	const goroutines, each = 50, 200
	conns := make([][]*socketd.Connection, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				c := &socketd.Connection{Socket: fmt.Sprintf("s%d", g), RemotePort: i}
				if err := db.BeginConnection(ctx, c); err != nil {
					t.Errorf("BeginConnection: %v", err)
					return
				}
				conns[g] = append(conns[g], c)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	rows, err := db.r.QueryContext(ctx, `SELECT id, socket, remote_port FROM connections`)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		socket string
		port   int
	}
	stored := map[int64]key{}
	for rows.Next() {
		var id int64
		var k key
		if err := rows.Scan(&id, &k.socket, &k.port); err != nil {
			t.Fatal(err)
		}
		stored[id] = k
	}
	rows.Close()
	if len(stored) != goroutines*each {
		t.Fatalf("%d rows stored, want %d", len(stored), goroutines*each)
	}
	seen := map[int64]bool{}
	for g, cs := range conns {
		for i, c := range cs {
			if seen[c.ID] {
				t.Fatalf("id %d given twice", c.ID)
			}
			seen[c.ID] = true
			if want := (key{fmt.Sprintf("s%d", g), i}); stored[c.ID] != want {
				t.Fatalf("id %d holds %v, its caller wrote %v", c.ID, stored[c.ID], want)
			}
		}
	}
	t.Logf("%d rows in %d transactions, biggest %d", goroutines*each, txs.Load(), biggest.Load())
	if txs.Load() >= goroutines*each {
		t.Errorf("%d transactions for %d rows: no group commit", txs.Load(), goroutines*each)
	}

	// Finish them all, as concurrently.
	for _, cs := range conns {
		wg.Go(func() {
			for _, c := range cs {
				c.State = socketd.ConnExited
				if err := db.FinishConnection(ctx, c); err != nil {
					t.Errorf("FinishConnection: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	var running int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM connections WHERE state = 'running'`).Scan(&running); err != nil || running != 0 {
		t.Errorf("%d rows still running (err %v)", running, err)
	}
}

// history builds a varied history: three sockets, three addresses, every
// final state, and start times out of step with ids.
func history(t *testing.T, db *DB, n int) (base time.Time, all []socketd.Connection) {
	t.Helper()
	ctx := testCtx(t)
	base = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	states := []socketd.ConnectionState{
		socketd.ConnRunning, socketd.ConnExited, socketd.ConnFailed,
		socketd.ConnKilled, socketd.ConnInterrupted, socketd.ConnRefused,
	}
	for i := range n {
		c := socketd.Connection{
			Socket:     []string{"a", "b", "c"}[i%3],
			State:      states[(i/3)%len(states)],
			RemoteIP:   []string{"10.0.0.1", "10.0.0.2", "::1"}[(i/2)%3],
			RemotePort: 1000 + i,
			StartedAt:  base.Add(time.Duration((i*7919)%n) * time.Second),
		}
		if err := db.BeginConnection(ctx, &c); err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	slices.Reverse(all) // newest first, as listed
	return base, all
}

func TestListConnectionsFiltersAndPages(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	const n = 300
	base, all := history(t, db, n)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

	for _, tc := range []struct {
		name  string
		f     socketd.ConnectionFilter
		match func(c socketd.Connection) bool
	}{
		{"all", socketd.ConnectionFilter{}, func(socketd.Connection) bool { return true }},
		{"socket", socketd.ConnectionFilter{Socket: "b"}, func(c socketd.Connection) bool { return c.Socket == "b" }},
		{"state", socketd.ConnectionFilter{State: socketd.ConnKilled},
			func(c socketd.Connection) bool { return c.State == socketd.ConnKilled }},
		{"remote ip", socketd.ConnectionFilter{RemoteIP: "::1"}, func(c socketd.Connection) bool { return c.RemoteIP == "::1" }},
		{"since", socketd.ConnectionFilter{Since: at(100)}, func(c socketd.Connection) bool { return !c.StartedAt.Before(at(100)) }},
		{"until", socketd.ConnectionFilter{Until: at(50)}, func(c socketd.Connection) bool { return c.StartedAt.Before(at(50)) }},
		{"since until", socketd.ConnectionFilter{Since: at(10), Until: at(200)},
			func(c socketd.Connection) bool { return !c.StartedAt.Before(at(10)) && c.StartedAt.Before(at(200)) }},
		{"everything", socketd.ConnectionFilter{Socket: "a", State: socketd.ConnRunning, RemoteIP: "10.0.0.1", Since: at(5), Until: at(290)},
			func(c socketd.Connection) bool {
				return c.Socket == "a" && c.State == socketd.ConnRunning && c.RemoteIP == "10.0.0.1" &&
					!c.StartedAt.Before(at(5)) && c.StartedAt.Before(at(290))
			}},
		{"no match", socketd.ConnectionFilter{Socket: "none"}, func(socketd.Connection) bool { return false }},
		{"far bounds", socketd.ConnectionFilter{Since: time.Time{}.Add(time.Second), Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
			func(socketd.Connection) bool { return true }},
	} {
		var want []socketd.Connection
		for _, c := range all {
			if tc.match(c) {
				want = append(want, c)
			}
		}
		for _, limit := range []int{1, 7, 0, socketd.MaxListLimit} {
			t.Run(fmt.Sprintf("%s/limit=%d", tc.name, limit), func(t *testing.T) {
				size := limit
				if size == 0 {
					size = socketd.DefaultListLimit
				}
				f := tc.f
				f.Limit = limit
				var got []socketd.Connection
				for pages := 0; ; pages++ {
					if pages > n+1 {
						t.Fatal("pagination does not end")
					}
					page, next, err := db.ListConnections(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > size {
						t.Fatalf("page of %d rows, limit %d", len(page), size)
					}
					if next != "" && len(page) != size {
						t.Fatalf("a page of %d rows (limit %d) has a next cursor", len(page), size)
					}
					if next == "" && pages > 0 && len(page) == 0 {
						t.Fatal("an empty last page: the previous page should have had no cursor")
					}
					got = append(got, page...)
					if next == "" {
						break
					}
					f.Cursor = next
				}
				if len(got) != len(want) {
					t.Fatalf("%d rows across pages, want %d", len(got), len(want))
				}
				for i := range got {
					if got[i].ID != want[i].ID || !got[i].StartedAt.Equal(want[i].StartedAt) ||
						got[i].Socket != want[i].Socket || got[i].State != want[i].State || got[i].RemoteIP != want[i].RemoteIP {
						t.Fatalf("row %d: got %+v, want %+v", i, got[i], want[i])
					}
				}
			})
		}
	}
}

func TestListConnectionsBadInput(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	history(t, db, 5)
	cursor := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, f := range []socketd.ConnectionFilter{
		{Limit: -1},
		{Limit: socketd.MaxListLimit + 1},
		{State: "bogus"},
		{Cursor: "garbage!"},
		{Cursor: "Zm9v"}, // "foo"
		{Cursor: cursor("c1.0")},
		{Cursor: cursor("c1.-5")},
		{Cursor: cursor("c1.abc")},
		{Cursor: cursor("c1.01")},
		{Cursor: cursor("c1.99999999999999999999")},
		{Cursor: cursor("c2.5")},
		{Cursor: base64.URLEncoding.EncodeToString([]byte("c1.5"))}, // padded
	} {
		page, next, err := db.ListConnections(ctx, f)
		if socketd.ErrorCode(err) != socketd.CodeInvalid {
			t.Errorf("filter %+v: %d rows, next %q, error %v; want CodeInvalid", f, len(page), next, err)
		}
	}
	// A valid cursor beyond the oldest row is simply an empty last page.
	page, next, err := db.ListConnections(ctx, socketd.ConnectionFilter{Cursor: encodeCursor(1)})
	if err != nil || len(page) != 0 || next != "" {
		t.Errorf("page after the oldest row: %d rows, next %q, error %v", len(page), next, err)
	}
	if _, _, err := db.ListConnections(ctx, socketd.ConnectionFilter{Limit: socketd.MaxListLimit}); err != nil {
		t.Errorf("the maximum limit: %v", err)
	}
}

// TestListConnectionsUsesIndexes checks that each filter reads a page
// through an index in id order, without sorting the rows it selects.
func TestListConnectionsUsesIndexes(t *testing.T) {
	db := openTest(t)
	history(t, db, 50)
	for _, tc := range []struct {
		f     socketd.ConnectionFilter
		index string
	}{
		{socketd.ConnectionFilter{}, ""},
		{socketd.ConnectionFilter{Cursor: encodeCursor(10)}, ""},
		{socketd.ConnectionFilter{Socket: "a"}, "connections_socket_id"},
		{socketd.ConnectionFilter{Socket: "a", Cursor: encodeCursor(10)}, "connections_socket_id"},
		// The address is looked up block by block (migration 000005).
		{socketd.ConnectionFilter{RemoteIP: "::1"}, "SEARCH x USING PRIMARY KEY (block=? AND remote_ip=?)"},
		{socketd.ConnectionFilter{State: socketd.ConnRunning}, "connections_state_id"},
		{socketd.ConnectionFilter{State: socketd.ConnRunning, Cursor: encodeCursor(10)}, "connections_state_id"},
	} {
		p := queryPlan(t, db, tc.f)
		if strings.Contains(p, "TEMP B-TREE") || !strings.Contains(p, tc.index) {
			t.Errorf("filter %+v: plan %q, want a walk of index %q without a sort", tc.f, p, tc.index)
		}
	}
}

func TestInterruptRunning(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	started := time.Now().Add(-2 * time.Second)
	var running []*socketd.Connection
	for range 3 {
		c := &socketd.Connection{Socket: "s", StartedAt: started}
		if err := db.BeginConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		running = append(running, c)
	}
	done := &socketd.Connection{Socket: "s", StartedAt: started}
	if err := db.BeginConnection(ctx, done); err != nil {
		t.Fatal(err)
	}
	done.State = socketd.ConnExited
	if err := db.FinishConnection(ctx, done); err != nil {
		t.Fatal(err)
	}
	doneBefore, err := db.GetConnection(ctx, done.ID)
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	n, err := db.InterruptRunning(ctx)
	if err != nil || n != 3 {
		t.Fatalf("InterruptRunning = %d, %v; want 3", n, err)
	}
	for _, c := range running {
		got, err := db.GetConnection(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != socketd.ConnInterrupted || got.EndedAt == nil || got.EndedAt.Before(before.Add(-time.Second)) ||
			got.DurationMS == nil || *got.DurationMS < 2000 || *got.DurationMS > 60000 {
			t.Errorf("interrupted row %+v (ended %v, duration %v)", got, got.EndedAt, got.DurationMS)
		}
	}
	if got, _ := db.GetConnection(ctx, done.ID); !reflect.DeepEqual(got, doneBefore) {
		t.Errorf("a finished row changed:\n got %#v\nwant %#v", got, doneBefore)
	}
	if n, err := db.InterruptRunning(ctx); err != nil || n != 0 {
		t.Errorf("second InterruptRunning = %d, %v; want 0", n, err)
	}
	// It runs at every start: it must not read the whole history.
	plan := planOf(t, db, interruptSQL, "x", 0, 0)
	if len(plan) == 0 || !strings.Contains(plan[0], "connections_state_id") {
		t.Errorf("InterruptRunning's plan %q does not use connections_state_id", plan)
	}
}

// histRow is a connection written straight into the table by insertRows.
type histRow struct {
	id      int64
	socket  string
	state   socketd.ConnectionState
	ip      string
	started time.Time
}

// insertRows writes rows in one transaction on the write connection,
// bypassing the history writer, so that a test can build a history many
// blocks long in milliseconds. The triggers keep the blocks, as for any
// insert.
func insertRows(t *testing.T, db *DB, rows []histRow) {
	t.Helper()
	insertRowsSQL(t, db.w, rows)
	// The store hands out ids after the highest it knows.
	db.idMu.Lock()
	for _, r := range rows {
		db.lastID = max(db.lastID, r.id)
	}
	db.idMu.Unlock()
}

// insertRowsSQL inserts rows into the history of database w.
func insertRowsSQL(t *testing.T, w *sql.DB, rows []histRow) {
	t.Helper()
	tx, err := w.BeginTx(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	st, err := tx.Prepare(`INSERT INTO connections (id, socket, state, remote_ip, started_at) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := st.Exec(r.id, r.socket, string(r.state), r.ip, toNanos(r.started)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// blockRows is the number of ids a row of connection_blocks summarises
// (migration 000005).
const blockRows = 4096

// skewedHistory inserts n rows one second apart, as a long-running daemon
// records them, but with the ways a start can run out of id order: one row
// in five starts up to 5 s early; the first row of a block starts before
// the last rows of the block before it; a stretch of a thousand rows
// follows a clock step back of two blocks' time; one row starts a year
// early and one ten years late. It returns the rows in id order.
func skewedHistory(t *testing.T, db *DB, n int) (base time.Time, rows []histRow) {
	t.Helper()
	base, rows = skewedRows(n)
	insertRows(t, db, rows)
	return base, rows
}

// skewedRows returns the rows of skewedHistory.
func skewedRows(n int) (base time.Time, rows []histRow) {
	base = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(3, 4))
	states := []socketd.ConnectionState{socketd.ConnExited, socketd.ConnExited, socketd.ConnFailed, socketd.ConnRefused}
	stepFrom, stepTo := 3*blockRows+100, 3*blockRows+1100
	for i := 1; i <= n; i++ {
		started := base.Add(time.Duration(i) * time.Second)
		switch {
		case i%blockRows == 0:
			started = base.Add(time.Duration(i-10)*time.Second - time.Millisecond)
		case i == n-5:
			started = base.AddDate(-1, 0, 0)
		case i == n-3:
			started = base.AddDate(10, 0, 0)
		case i >= stepFrom && i < stepTo:
			started = started.Add(-2 * blockRows * time.Second)
		case r.IntN(5) == 0:
			started = started.Add(-time.Duration(r.Int64N(int64(5 * time.Second))))
		}
		rows = append(rows, histRow{
			id:      int64(i),
			socket:  []string{"a", "b", "c"}[r.IntN(3)],
			state:   states[r.IntN(len(states))],
			ip:      []string{"10.0.0.1", "10.0.0.2", "::1"}[r.IntN(3)],
			started: started,
		})
	}
	return base, rows
}

// matches reports whether r is in what f selects, as the API defines it.
func (r histRow) matches(f socketd.ConnectionFilter) bool {
	return (f.Socket == "" || r.socket == f.Socket) &&
		(f.State == "" || r.state == f.State) &&
		(f.RemoteIP == "" || r.ip == f.RemoteIP) &&
		(f.Since.IsZero() || !r.started.Before(f.Since)) &&
		(f.Until.IsZero() || r.started.Before(f.Until))
}

// wantIDs returns the ids of the rows f selects, newest first.
func wantIDs(rows []histRow, f socketd.ConnectionFilter) []int64 {
	var ids []int64
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].matches(f) {
			ids = append(ids, rows[i].id)
		}
	}
	return ids
}

// listAll reads every page f selects and returns the ids in the order
// listed, checking that pages are full but for the last, and that the last
// has no cursor. between, when not nil, runs after each page.
func listAll(t *testing.T, db *DB, f socketd.ConnectionFilter, between func()) []int64 {
	t.Helper()
	ctx := testCtx(t)
	size := f.Limit
	if size == 0 {
		size = socketd.DefaultListLimit
	}
	var ids []int64
	for pages := 0; ; pages++ {
		if pages > 100_000 {
			t.Fatal("pagination does not end")
		}
		page, next, err := db.ListConnections(ctx, f)
		if err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		if len(page) > size || (next != "" && len(page) != size) {
			t.Fatalf("filter %+v: a page of %d rows (limit %d), next %q", f, len(page), size, next)
		}
		if next == "" && pages > 0 && len(page) == 0 {
			t.Fatalf("filter %+v: an empty last page: the previous page should have had no cursor", f)
		}
		for _, c := range page {
			ids = append(ids, c.ID)
		}
		if next == "" {
			return ids
		}
		if between != nil {
			between()
		}
		f.Cursor = next
	}
}

// TestListConnectionsTimeRanges checks that a time range selects exactly
// the rows that started in it, across pages, over a history many blocks
// long whose starts run out of id order in every way they can.
func TestListConnectionsTimeRanges(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	const n = 5*blockRows + 100
	base, rows := skewedHistory(t, db, n)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }

	// Rows recorded through the writer, late: they start inside the oldest
	// block but take the newest ids.
	for i := range 3 {
		c := &socketd.Connection{Socket: "b", State: socketd.ConnExited, RemoteIP: "10.0.0.2", StartedAt: at(500 + float64(i))}
		if err := db.BeginConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, histRow{id: c.ID, socket: c.Socket, state: c.State, ip: c.RemoteIP, started: c.StartedAt})
	}
	checkBlocks(t, db)

	type window struct{ since, until time.Time }
	windows := []window{
		{at(blockRows), at(2 * blockRows)},                                      // block boundaries
		{at(2*blockRows - 12), at(2*blockRows - 9)},                             // the early first row of block 2
		{at(2*blockRows - 10), at(2*blockRows - 10).Add(-time.Millisecond / 2)}, // empty: since after until
		{at(blockRows + 5), at(blockRows + 5)},                                  // empty: since equals until
		{at(blockRows + 300), at(blockRows + 400)},                              // also hit by the clock step back
		{at(3*blockRows + 50), at(3*blockRows + 150)},                           // straddles the step back
		{base.AddDate(-1, 0, 0), base.AddDate(-1, 0, 0).Add(time.Nanosecond)},   // the year-early row alone
		{base.AddDate(-2, 0, 0), base},                                          // before every regular row
		{base.AddDate(10, 0, 0), time.Time{}},                                   // the ten-years-late row alone
		{at(n + 1), base.AddDate(9, 0, 0)},                                      // after every row but that one: empty
		{at(499), at(503)},                                                      // old rows and the late writer rows
		{at(4*blockRows + 17), time.Time{}},                                     // since only
		{time.Time{}, at(blockRows / 2)},                                        // until only
		{at(0), at(n + 10)},                                                     // nearly everything
	}
	// The exact start of a row bounds a window inclusively below and
	// exclusively above.
	edge := rows[2*blockRows+7].started
	windows = append(windows, window{edge, edge.Add(time.Nanosecond)}, window{edge.Add(-time.Second), edge})
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		width := math.Exp(r.Float64() * math.Log(20000))
		since := r.Float64()*(n+200) - 100
		windows = append(windows, window{at(since), at(since + width)})
	}

	filters := []socketd.ConnectionFilter{
		{}, {Socket: "b"}, {State: socketd.ConnFailed}, {RemoteIP: "::1"},
		{Socket: "a", State: socketd.ConnExited, RemoteIP: "10.0.0.1"},
	}
	for wi, w := range windows {
		for fi, f := range filters {
			f.Since, f.Until = w.since, w.until
			want := wantIDs(rows, f)
			limits := []int{socketd.MaxListLimit}
			if len(want) <= 5000 {
				limits = append(limits, 97)
			}
			if len(want) <= 100 {
				limits = append(limits, 1)
			}
			for _, limit := range limits {
				f.Limit = limit
				if got := listAll(t, db, f, nil); !slices.Equal(got, want) {
					t.Errorf("window %d, filter %d (%+v): %d rows %v, want %d %v",
						wi, fi, f, len(got), head(got), len(want), head(want))
				}
			}
		}
	}
}

// head returns the first few ids, for a readable failure.
func head(ids []int64) []int64 { return ids[:min(len(ids), 8)] }

// checkBlocks checks the invariants the lists rely on: every row's block
// exists and its bounds hold the row's id and start; only the newest block
// may be open; the address index holds exactly one entry per row of a
// sealed block and none for the open block's rows, which are scanned.
func checkBlocks(t *testing.T, db *DB) {
	t.Helper()
	ctx := testCtx(t)
	var outside, open, missing, extra int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM connections c
		LEFT JOIN connection_blocks b ON b.block = c.id >> 12
		WHERE b.block IS NULL OR c.id NOT BETWEEN b.min_id AND b.max_id
			OR c.started_at NOT BETWEEN b.min_started AND b.max_started`).Scan(&outside)
	if err != nil || outside != 0 {
		t.Fatalf("%d rows outside their block's bounds (err %v)", outside, err)
	}
	err = db.r.QueryRowContext(ctx, `SELECT count(*) FROM connection_blocks
		WHERE sealed = 0 AND block < (SELECT max(block) FROM connection_blocks)`).Scan(&open)
	if err != nil || open != 0 {
		t.Fatalf("%d open blocks below the newest (err %v)", open, err)
	}
	err = db.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM connections c JOIN connection_blocks b ON b.block = c.id >> 12
			WHERE b.sealed = 1 AND NOT EXISTS (SELECT 1 FROM connection_block_ips x
				WHERE x.block = c.id >> 12 AND x.remote_ip = c.remote_ip AND x.id = c.id)),
		(SELECT count(*) FROM connection_block_ips x JOIN connection_blocks b ON b.block = x.block
			WHERE b.sealed = 0 OR NOT EXISTS (SELECT 1 FROM connections c WHERE c.id = x.id AND c.remote_ip = x.remote_ip))`,
	).Scan(&missing, &extra)
	if err != nil || missing != 0 || extra != 0 {
		t.Fatalf("%d rows of sealed blocks missing from the address index, %d entries too many (err %v)", missing, extra, err)
	}
}

// TestListConnectionsTimeRangeUnderInserts pages through a time range while
// rows that match it are recorded: the pages hold exactly the rows that
// matched when the first was read, each once, since a new row takes an id
// above every cursor. A fresh listing then finds the new rows too.
func TestListConnectionsTimeRangeUnderInserts(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	_, rows := skewedHistory(t, db, 3*blockRows)
	f := socketd.ConnectionFilter{Since: rows[blockRows/2].started, Until: rows[2*blockRows].started, Limit: 50}
	want := wantIDs(rows, f)
	added := 0
	got := listAll(t, db, f, func() {
		// Late rows inside the range, and one in order at its end.
		for _, started := range []time.Time{f.Since, f.Since.Add(time.Duration(added) * time.Millisecond), f.Until.Add(-time.Nanosecond)} {
			c := &socketd.Connection{Socket: "a", StartedAt: started}
			if err := db.BeginConnection(ctx, c); err != nil {
				t.Fatal(err)
			}
			rows = append(rows, histRow{id: c.ID, socket: c.Socket, state: socketd.ConnRunning, started: started})
			added++
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("pages under inserts: %d rows %v, want %d %v", len(got), head(got), len(want), head(want))
	}
	f.Limit = socketd.MaxListLimit
	want = wantIDs(rows, f)
	if got := listAll(t, db, f, nil); !slices.Equal(got, want) || len(want) != len(got) {
		t.Fatalf("after the inserts: %d rows %v, want %d %v", len(got), head(got), len(want), head(want))
	}
	if added == 0 || len(want) < added {
		t.Fatalf("%d rows added, %d listed", added, len(want))
	}
	checkBlocks(t, db)
}

// TestBlocksFollowChanges changes and deletes rows behind the store's back,
// as an operator with a sqlite3 shell might: the triggers keep the blocks
// true, so the lists stay exact.
func TestBlocksFollowChanges(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	base, rows := skewedHistory(t, db, 2*blockRows+10)
	// Move a row of block 0 far into the future and to another address,
	// move the start of a row of block 1 into block 0's time, and delete a
	// row of each block.
	moved, early := &rows[100], &rows[blockRows+5]
	moved.started, moved.ip = base.AddDate(1, 0, 0), "192.0.2.1"
	early.started = rows[10].started
	// And the same in the open block, whose addresses are not indexed.
	openMoved := &rows[2*blockRows+3]
	openMoved.ip = "192.0.2.2"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE connections SET started_at = ?, remote_ip = ? WHERE id = ?`, []any{toNanos(moved.started), moved.ip, moved.id}},
		{`UPDATE connections SET remote_ip = ? WHERE id = ?`, []any{openMoved.ip, openMoved.id}},
		{`UPDATE connections SET started_at = ? WHERE id = ?`, []any{toNanos(early.started), early.id}},
		{`DELETE FROM connections WHERE id IN (?, ?)`, []any{rows[7].id, rows[blockRows+9].id}},
	} {
		if _, err := db.w.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	rows = slices.DeleteFunc(rows, func(r histRow) bool { return r.id == 8 || r.id == blockRows+10 })
	checkBlocks(t, db)
	for _, f := range []socketd.ConnectionFilter{
		{Since: base.AddDate(1, 0, 0)},
		{Since: rows[5].started, Until: rows[20].started},
		{RemoteIP: "192.0.2.1"},
		{RemoteIP: "::1", Until: rows[200].started},
		{RemoteIP: moved.ip, Since: moved.started},
		{RemoteIP: openMoved.ip},
	} {
		f.Limit = 50
		if got, want := listAll(t, db, f, nil), wantIDs(rows, f); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("filter %+v: %d rows %v, want %d %v", f, len(got), head(got), len(want), head(want))
		}
	}
}

// TestMigrationFillsBlocks opens databases written before migration 000005
// (no blocks) and before 000006 (every block sealed, the newest one still
// filling): the blocks must cover the rows already there, and rows added
// since, into the old newest block and past it, must be listed exactly.
func TestMigrationFillsBlocks(t *testing.T) {
	for _, version := range []int{4, 5} {
		t.Run(fmt.Sprint("from version ", version), func(t *testing.T) {
			ctx := testCtx(t)
			path := filepath.Join(t.TempDir(), "socketd.db")
			before := fstest.MapFS{}
			entries, err := fs.ReadDir(migrations.FS, ".")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if v, _ := strconv.Atoi(e.Name()[:6]); v <= version {
					b, err := fs.ReadFile(migrations.FS, e.Name())
					if err != nil {
						t.Fatal(err)
					}
					before[e.Name()] = &fstest.MapFile{Data: b}
				}
			}
			// Only the schema of then: the writer of now would not
			// find its columns.
			w, err := sql.Open("sqlite3", dsn(path, false))
			if err != nil {
				t.Fatal(err)
			}
			if err := migrateUp(ctx, w, path, before); err != nil {
				t.Fatal(err)
			}
			_, rows := skewedRows(2*blockRows + 50)
			insertRowsSQL(t, w, rows)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			checkBlocks(t, db)
			// More rows: the rest of the newest block, and into the next.
			last := rows[len(rows)-1]
			var more []histRow
			for i := range blockRows {
				more = append(more, histRow{id: last.id + int64(i) + 1, socket: "a", state: socketd.ConnExited,
					ip: []string{"10.0.0.2", "::1"}[i%2], started: last.started.Add(time.Duration(i+1) * time.Second)})
			}
			insertRows(t, db, more)
			rows = append(rows, more...)
			checkBlocks(t, db)
			for _, f := range []socketd.ConnectionFilter{
				{Since: rows[blockRows-20].started, Until: rows[blockRows+20].started},
				{RemoteIP: "10.0.0.2", Limit: 1000},
				{RemoteIP: "::1", Since: rows[3000].started, State: socketd.ConnFailed},
				{RemoteIP: "::1", Since: rows[2*blockRows+40].started, Limit: 100},
			} {
				if got, want := listAll(t, db, f, nil), wantIDs(rows, f); !slices.Equal(got, want) || len(want) == 0 {
					t.Errorf("filter %+v: %d rows %v, want %d %v", f, len(got), head(got), len(want), head(want))
				}
			}
		})
	}
}

// TestListConnectionsPlans holds every shape of page to its plan: each
// walks one index, or the table, in id order from its bounds, with no sort
// and no scan of the whole table, so that a change of SQLite, of the schema
// or of the planner's statistics cannot quietly turn a page into a walk of
// the history. It checks the plans without statistics, with those PRAGMA
// optimize may gather at Close for a small history, and with those of a
// 10-million-row history.
func TestListConnectionsPlans(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "socketd.db")
	now, cursor := time.Now(), encodeCursor(10)
	byAddress := []string{
		"SCAN b", "SEARCH x USING PRIMARY KEY (block=? AND remote_ip=?",
		"SEARCH c USING INTEGER PRIMARY KEY (rowid=?)",
	}
	cases := []struct {
		f    socketd.ConnectionFilter
		want []string
	}{
		{socketd.ConnectionFilter{Since: now}, []string{"SEARCH connections USING INTEGER PRIMARY KEY (rowid>?)"}},
		{socketd.ConnectionFilter{Until: now}, []string{"SEARCH connections USING INTEGER PRIMARY KEY (rowid<?)"}},
		{socketd.ConnectionFilter{Until: now, Cursor: cursor}, []string{"SEARCH connections USING INTEGER PRIMARY KEY (rowid<?)"}},
		{socketd.ConnectionFilter{Since: now, Until: now}, []string{"SEARCH connections USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"}},
		{socketd.ConnectionFilter{Since: now, Until: now, Cursor: cursor}, []string{"SEARCH connections USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"}},
		{socketd.ConnectionFilter{Socket: "a", Since: now, Until: now}, []string{"SEARCH connections USING INDEX connections_socket_id (socket=? AND id>? AND id<?)"}},
		{socketd.ConnectionFilter{Socket: "a", Since: now, Until: now, Cursor: cursor}, []string{"SEARCH connections USING INDEX connections_socket_id (socket=? AND id>? AND id<?)"}},
		{socketd.ConnectionFilter{Socket: "a", Until: now}, []string{"SEARCH connections USING INDEX connections_socket_id (socket=? AND id<?)"}},
		{socketd.ConnectionFilter{State: socketd.ConnFailed, Since: now}, []string{"SEARCH connections USING INDEX connections_state_id (state=? AND id>?)"}},
		{socketd.ConnectionFilter{State: socketd.ConnFailed, Since: now, Until: now, Cursor: cursor}, []string{"SEARCH connections USING INDEX connections_state_id (state=? AND id>? AND id<?)"}},
		{socketd.ConnectionFilter{Socket: "a", State: socketd.ConnFailed, Until: now}, []string{"SEARCH connections USING INDEX connections_socket_id (socket=? AND id<?)"}},
		{socketd.ConnectionFilter{RemoteIP: "::1"}, byAddress},
		{socketd.ConnectionFilter{RemoteIP: "::1", Cursor: cursor}, byAddress},
		{socketd.ConnectionFilter{RemoteIP: "::1", Socket: "a", State: socketd.ConnFailed, Since: now, Until: now, Cursor: cursor}, byAddress},
	}
	check := func(t *testing.T, db *DB) {
		t.Helper()
		for _, tc := range cases {
			p := queryPlan(t, db, tc.f)
			for _, want := range tc.want {
				if !strings.Contains(p, want) {
					t.Errorf("filter %+v: plan %q does not %s", tc.f, p, want)
				}
			}
			// A scan of connection_blocks is fine: the blocks table is
			// small, and the open block is found at its top.
			for _, step := range strings.Split(p, "; ") {
				for _, bad := range []string{"TEMP B-TREE", "AUTOMATIC"} {
					if strings.Contains(step, bad) {
						t.Errorf("filter %+v: plan %q uses a %s", tc.f, p, bad)
					}
				}
				for _, bad := range []string{"SCAN connections", "SCAN c", "SCAN x"} {
					if step == bad || strings.HasPrefix(step, bad+" ") {
						t.Errorf("filter %+v: plan %q does %s", tc.f, p, bad)
					}
				}
			}
		}
	}
	reopen := func(t *testing.T) {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		check(t, db)
	}
	t.Run("unanalyzed", func(t *testing.T) {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		history(t, db, 50)
		check(t, db)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("small", reopen)
	raw := rawOpen(t, path)
	if _, err := raw.ExecContext(ctx, `ANALYZE sqlite_schema; DELETE FROM sqlite_stat1;
		INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
			('connections', NULL, '10000000'),
			('connections', 'connections_socket_id', '10000000 200000 1'),
			('connections', 'connections_state_id', '10000000 2000000 1'),
			('connection_blocks', NULL, '2500'),
			('connection_block_ips', 'connection_block_ips', '10000000 4096 2 1');`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	t.Run("large", reopen)
}

// queryPlan returns SQLite's plan for the list query of f, its steps joined
// by "; ".
func queryPlan(t *testing.T, db *DB, f socketd.ConnectionFilter) string {
	t.Helper()
	qs, _, err := listQueries(f)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for _, q := range qs {
		plan = append(plan, planOf(t, db, q.sql+" LIMIT ?", append(q.args, 10)...)...)
	}
	return strings.Join(plan, "; ")
}

// TestTriggerPlans holds every statement of the block triggers to a plan
// that reads what the inserted row touches: a walk of connections there
// would make an insert, or the seal of every 4096th, cost a walk of the
// whole history.
func TestTriggerPlans(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	history(t, db, 50)
	rows, err := db.w.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'connections'`)
	if err != nil {
		t.Fatal(err)
	}
	triggers := map[string]string{}
	for rows.Next() {
		var name, sql string
		if err := rows.Scan(&name, &sql); err != nil {
			t.Fatal(err)
		}
		triggers[name] = sql
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(triggers) < 4 {
		t.Fatalf("triggers %v", slices.Collect(maps.Keys(triggers)))
	}
	values := strings.NewReplacer("NEW.id", "5000", "OLD.id", "5000", "NEW.started_at", "1", "NEW.remote_ip", "'::1'", "OLD.remote_ip", "'::1'")
	for name, sql := range triggers {
		head, body, ok := strings.Cut(sql, "\nBEGIN")
		if !ok {
			head, body, ok = strings.Cut(sql, " BEGIN")
		}
		if !ok {
			t.Fatalf("%s: no BEGIN in %q", name, sql)
		}
		body, _, _ = strings.Cut(body, "\nEND")
		stmts := strings.Split(body, ";")
		if _, when, ok := strings.Cut(head, "\nWHEN "); ok {
			stmts = append(stmts, "SELECT "+when)
		}
		for _, stmt := range stmts {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			plan := planOf(t, db, values.Replace(stmt))
			for _, step := range plan {
				if step == "SCAN connections" || step == "SCAN c" || strings.HasPrefix(step, "SCAN c ") || strings.HasPrefix(step, "SCAN connections ") {
					t.Errorf("%s: %q\nplan %q walks the history", name, strings.TrimSpace(stmt), plan)
				}
			}
		}
	}
}

// planOf returns the steps of the query plan of stmt with args, on the
// write connection.
func planOf(t *testing.T, db *DB, stmt string, args ...any) []string {
	t.Helper()
	rows, err := db.w.QueryContext(testCtx(t), "EXPLAIN QUERY PLAN "+stmt, args...)
	if err != nil {
		t.Fatalf("%q: %v", stmt, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestConnectionStats(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	until := since.Add(time.Hour)
	ms := func(n int64) *int64 { return &n }
	code := func(n int) *int { return &n }
	rows := []socketd.Connection{
		// Outside the range, or another socket's: not counted.
		{Socket: "a", State: socketd.ConnExited, StartedAt: since.Add(-time.Nanosecond), DurationMS: ms(1), ExitCode: code(0)},
		{Socket: "a", State: socketd.ConnExited, StartedAt: until, DurationMS: ms(1), ExitCode: code(0)},
		{Socket: "b", State: socketd.ConnExited, StartedAt: since.Add(time.Minute), DurationMS: ms(1), ExitCode: code(0)},
		// The range's first minute.
		{Socket: "a", State: socketd.ConnExited, StartedAt: since, DurationMS: ms(0), ExitCode: code(0)},
		{Socket: "a", State: socketd.ConnExited, StartedAt: since.Add(59 * time.Second), DurationMS: ms(9), ExitCode: code(0)},
		{Socket: "a", State: socketd.ConnFailed, StartedAt: since.Add(30 * time.Second), DurationMS: ms(10), ExitCode: code(3)},
		{Socket: "a", State: socketd.ConnRefused, StartedAt: since.Add(time.Second), Reason: socketd.ReasonRate},
		// Minute 10.
		{Socket: "a", State: socketd.ConnKilled, StartedAt: since.Add(10 * time.Minute), DurationMS: ms(999), Signal: "SIGKILL"},
		{Socket: "a", State: socketd.ConnInterrupted, StartedAt: since.Add(10*time.Minute + time.Second), DurationMS: ms(2 * 3600 * 1000)},
		{Socket: "a", State: socketd.ConnRefused, StartedAt: since.Add(10 * time.Minute), Reason: socketd.ReasonRate},
		{Socket: "a", State: socketd.ConnRefused, StartedAt: since.Add(10 * time.Minute), Reason: socketd.ReasonMaxConnections},
		// The last minute: a running connection has no duration or outcome.
		{Socket: "a", State: socketd.ConnRunning, StartedAt: until.Add(-time.Nanosecond)},
	}
	for i := range rows {
		if err := db.BeginConnection(ctx, &rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	st, err := db.ConnectionStats(ctx, "a", since, until, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Steps) != 60 || !st.Steps[0].Start.Equal(since) || !st.Steps[59].Start.Equal(until.Add(-time.Minute)) {
		t.Fatalf("steps: %d from %v to %v, want 60 from %v", len(st.Steps), st.Steps[0].Start, st.Steps[len(st.Steps)-1].Start, since)
	}
	wantSteps := map[int]socketd.StepCount{0: {Accepted: 3, Refused: 1}, 10: {Accepted: 2, Refused: 2}, 59: {Accepted: 1}}
	for i, s := range st.Steps {
		w := wantSteps[i]
		if s.Accepted != w.Accepted || s.Refused != w.Refused {
			t.Errorf("step %d: accepted %d refused %d, want %d and %d", i, s.Accepted, s.Refused, w.Accepted, w.Refused)
		}
	}
	// < 10ms: 0 and 9; < 100ms: 10; < 1s: 999; > 1h: two hours.
	if want := []int64{2, 1, 1, 0, 0, 0, 0, 1}; !slices.Equal(st.Durations, want) {
		t.Errorf("durations %v, want %v", st.Durations, want)
	}
	if want := map[string]int64{"exit 0": 2, "exit 3": 1, "SIGKILL": 1, "interrupted": 1}; !maps.Equal(st.Outcomes, want) {
		t.Errorf("outcomes %v, want %v", st.Outcomes, want)
	}
	if want := map[string]int64{socketd.ReasonRate: 2, socketd.ReasonMaxConnections: 1}; !maps.Equal(st.Refused, want) {
		t.Errorf("refused %v, want %v", st.Refused, want)
	}
	if st.Rows != 9 || st.Partial {
		t.Errorf("rows %d partial %v, want 9 rows, whole", st.Rows, st.Partial)
	}
	// The socket's index, walked down within the ids of the range's
	// blocks: never a walk of the whole history.
	q, args := statsQuery("a", since, until)
	if plan := strings.Join(planOf(t, db, q, args...), "\n"); !strings.Contains(plan,
		"SEARCH connections USING INDEX connections_socket_id (socket=? AND id>? AND id<?)") {
		t.Errorf("stats plan:\n%s", plan)
	}

	// Past the cap, the newest rows are counted and the stats say so.
	defer func(n int) { maxStatsRows = n }(maxStatsRows)
	maxStatsRows = 4
	st, err = db.ConnectionStats(ctx, "a", since, until, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Partial || st.Rows != 4 || len(st.Steps) != 4 {
		t.Fatalf("capped: rows %d partial %v steps %d, want 4 rows, partial, 4 steps", st.Rows, st.Partial, len(st.Steps))
	}
	// The newest four ids: the running row and the last three of minute 10.
	if s := st.Steps[0]; s.Accepted != 1 || s.Refused != 2 || st.Steps[3].Accepted != 1 {
		t.Errorf("capped steps %+v", st.Steps)
	}
	if !st.From.Equal(since.Add(10 * time.Minute)) {
		t.Errorf("capped stats from %v, want the earliest start read", st.From)
	}

	for _, bad := range []struct {
		since, until time.Time
		step         time.Duration
	}{{since, until, time.Millisecond}, {until, since, time.Minute}, {since, since, time.Minute}, {since, since.AddDate(1, 0, 0), time.Minute}} {
		if _, err := db.ConnectionStats(ctx, "a", bad.since, bad.until, bad.step); socketd.ErrorCode(err) != socketd.CodeInvalid {
			t.Errorf("stats from %v to %v by %v: %v, want invalid", bad.since, bad.until, bad.step, err)
		}
	}
}
