package store

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socketd/socketd"
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
		StartedAt: started, EndedAt: &ended, DurationMS: &d, Error: "too many connections",
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
	ctx := testCtx(t)
	history(t, db, 50)
	for _, tc := range []struct {
		f     socketd.ConnectionFilter
		index string
	}{
		{socketd.ConnectionFilter{}, ""},
		{socketd.ConnectionFilter{Cursor: encodeCursor(10)}, ""},
		{socketd.ConnectionFilter{Socket: "a"}, "connections_socket_id"},
		{socketd.ConnectionFilter{Socket: "a", Cursor: encodeCursor(10)}, "connections_socket_id"},
		{socketd.ConnectionFilter{RemoteIP: "::1"}, "connections_remote_ip_id"},
		{socketd.ConnectionFilter{State: socketd.ConnRunning}, "connections_state_id"},
		{socketd.ConnectionFilter{State: socketd.ConnRunning, Cursor: encodeCursor(10)}, "connections_state_id"},
	} {
		q, args, _, err := listQuery(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
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
}
