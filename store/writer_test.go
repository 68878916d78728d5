package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// holdWriter makes the writer stop before each batch until release is
// closed, and reports each batch's size on sizes. It must be called before
// the first history write.
func holdWriter(db *DB) (sizes <-chan int, release func()) {
	ch := make(chan int, 100)
	gate := make(chan struct{})
	db.hist.beforeBatch = func(rs []*request) {
		ch <- len(rs)
		<-gate
	}
	var once sync.Once
	return ch, func() { once.Do(func() { close(gate) }) }
}

// waitQueued waits until n requests wait in the writer's queue.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(db.hist.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(db.hist.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func countRows(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.r.QueryRow(`SELECT count(*) FROM connections`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBeginHonoursContext checks both sides of cancellation: a request
// still queued is withdrawn and never written; one the writer has taken
// reports its real outcome.
func TestBeginHonoursContext(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	sizes, release := holdWriter(db)
	defer release()

	ctxA, cancelA := context.WithCancel(ctx)
	a := &socketd.Connection{Socket: "taken"}
	errA := make(chan error, 1)
	go func() { errA <- db.BeginConnection(ctxA, a) }()
	<-sizes // the writer holds a's batch

	ctxB, cancelB := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelB()
	b := &socketd.Connection{Socket: "withdrawn"}
	if err := db.BeginConnection(ctxB, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued request: %v, want the context's deadline", err)
	}
	if b.ID != 0 {
		t.Errorf("a withdrawn request got id %d", b.ID)
	}

	cancelA()
	release()
	if err := <-errA; err != nil {
		t.Fatalf("taken request: %v, want its commit", err)
	}
	if a.ID == 0 {
		t.Error("a committed request has no id")
	}
	// The queue is FIFO: once a later request is committed, the writer has
	// dealt with the withdrawn one.
	c := &socketd.Connection{Socket: "later"}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db); n != 2 {
		t.Errorf("%d rows, want 2 (the withdrawn one must not be written)", n)
	}
	var withdrawn int
	db.r.QueryRow(`SELECT count(*) FROM connections WHERE socket = 'withdrawn'`).Scan(&withdrawn)
	if withdrawn != 0 {
		t.Error("the withdrawn request was written")
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.BeginConnection(done, &socketd.Connection{Socket: "dead"}); !errors.Is(err, context.Canceled) {
		t.Errorf("BeginConnection with a cancelled context: %v", err)
	}
}

// TestCloseFlushesQueue checks that Close commits every write queued before
// it and that writes after it fail with ErrClosed.
func TestCloseFlushesQueue(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "socketd.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	sizes, release := holdWriter(db)
	defer release()

	first := &socketd.Connection{Socket: "first"}
	errs := make(chan error, 101)
	go func() { errs <- db.BeginConnection(ctx, first) }()
	<-sizes
	const queued = 100
	for range queued {
		go func() { errs <- db.BeginConnection(ctx, &socketd.Connection{Socket: "queued"}) }()
	}
	waitQueued(t, db, queued)

	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	// Close must wait for the queue, which waits for release.
	select {
	case err := <-closed:
		t.Fatalf("Close returned before the queue was written: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range queued + 1 {
		if err := <-errs; err != nil {
			t.Errorf("a write queued before Close: %v", err)
		}
	}

	c := &socketd.Connection{Socket: "late", ID: first.ID, State: socketd.ConnExited}
	for name, err := range map[string]error{
		"BeginConnection":  db.BeginConnection(ctx, &socketd.Connection{Socket: "late"}),
		"FinishConnection": db.FinishConnection(ctx, c),
		"InterruptRunning": func() error { _, err := db.InterruptRunning(ctx); return err }(),
	} {
		if !errors.Is(err, ErrClosed) || socketd.ErrorCode(err) != socketd.CodeUnavailable {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countRows(t, db); n != queued+1 {
		t.Errorf("%d rows after reopening, want %d", n, queued+1)
	}
}

// TestCloseRacesWrites checks that a write racing Close either commits or
// fails with ErrClosed, never hangs or is lost.
func TestCloseRacesWrites(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "socketd.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 20 {
		wg.Go(func() {
			for {
				err := db.BeginConnection(ctx, &socketd.Connection{Socket: "race"})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("BeginConnection: %v", err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	// Let the writers get going, then close under them.
	for countRows(t, db) < 200 {
		time.Sleep(time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countRows(t, db); n != ok {
		t.Errorf("%d rows stored, %d writes reported committed", n, ok)
	}
}

// TestBadRequestFailsAlone checks that a request SQLite refuses fails on
// its own while the rest of its batch is committed.
func TestBadRequestFailsAlone(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	if _, err := db.w.ExecContext(ctx, `CREATE TEMP TRIGGER boom BEFORE INSERT ON connections
		WHEN NEW.socket = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	running := &socketd.Connection{Socket: "s"}
	if err := db.BeginConnection(ctx, running); err != nil {
		t.Fatal(err)
	}
	sizes, release := holdWriter(db)
	defer release()

	first := make(chan error, 1)
	go func() { first <- db.BeginConnection(ctx, &socketd.Connection{Socket: "first"}) }()
	<-sizes

	type result struct {
		socket string
		c      *socketd.Connection
		err    error
	}
	results := make(chan result, 20)
	sockets := []string{"good", "good", "boom", "good", "missing", "good", "boom", "good", "finish"}
	for _, s := range sockets {
		go func() {
			switch s {
			case "missing":
				c := &socketd.Connection{ID: 1 << 40, State: socketd.ConnExited}
				results <- result{s, c, db.FinishConnection(ctx, c)}
			case "finish":
				c := *running
				c.State = socketd.ConnKilled
				c.Log = []byte("killed")
				results <- result{s, &c, db.FinishConnection(ctx, &c)}
			default:
				c := &socketd.Connection{Socket: s}
				results <- result{s, c, db.BeginConnection(ctx, c)}
			}
		}()
	}
	waitQueued(t, db, len(sockets))
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-sizes; n != len(sockets) {
		t.Fatalf("second batch of %d requests, want %d", n, len(sockets))
	}
	ids := map[int64]bool{}
	for range sockets {
		r := <-results
		switch r.socket {
		case "boom":
			if r.err == nil || !strings.Contains(r.err.Error(), "boom refused") {
				t.Errorf("boom: %v", r.err)
			}
		case "missing":
			wantCode(t, r.err, socketd.CodeNotFound)
		default:
			if r.err != nil {
				t.Errorf("%s: %v", r.socket, r.err)
			} else if r.socket == "good" {
				ids[r.c.ID] = true
			}
		}
	}
	if len(ids) != 5 {
		t.Errorf("%d distinct ids for 5 good rows", len(ids))
	}
	for id := range ids {
		if c, err := db.GetConnection(ctx, id); err != nil || c.Socket != "good" {
			t.Errorf("row %d: %+v, %v", id, c, err)
		}
	}
	if got, _ := db.GetConnection(ctx, running.ID); got.State != socketd.ConnKilled {
		t.Errorf("finished row: %+v", got)
	}
	if log, _ := db.ConnectionLog(ctx, running.ID); string(log) != "killed" {
		t.Errorf("log %q", log)
	}
	if n := countRows(t, db); n != 1+1+5 {
		t.Errorf("%d rows, want 7", n)
	}
}

// TestFinishAsyncRidesAlong checks that an asynchronous finish waits for a
// write someone waits for and is committed with it, and is reported only
// once it is committed.
func TestFinishAsyncRidesAlong(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	c := &socketd.Connection{Socket: "lazy"}
	if err := db.BeginConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	db.hist.lazyDelay = time.Hour // only a waited-for write can commit it
	var batches [][]op
	var mu sync.Mutex
	db.hist.beforeBatch = func(rs []*request) {
		ops := make([]op, len(rs))
		for i, r := range rs {
			ops[i] = r.op
		}
		mu.Lock()
		batches = append(batches, ops)
		mu.Unlock()
	}

	done := make(chan error, 1)
	c.State = socketd.ConnExited
	db.FinishConnectionAsync(c, func(err error) { done <- err })
	select {
	case err := <-done:
		t.Fatalf("finish reported (%v) with nothing committed", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := committedState(t, db, c.ID); got != socketd.ConnRunning {
		t.Fatalf("row %s before any commit, want running", got)
	}

	next := &socketd.Connection{Socket: "lazy"}
	if err := db.BeginConnection(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("finish: %v", err)
	}
	if got := mustGet(t, db, c.ID); got.State != socketd.ConnExited || got.EndedAt == nil {
		t.Errorf("row %s ended %v after the next begin, want exited", got.State, got.EndedAt)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 || len(batches[0]) != 2 || batches[0][0] != opFinish || batches[0][1] != opBegin {
		t.Errorf("batches %v, want one: finish and begin together", batches)
	}
}

// TestFinishAsyncAlone checks that an asynchronous finish nobody follows is
// committed after the lazy delay, and one queued at Close is committed by
// Close; after Close it fails at once.
func TestFinishAsyncAlone(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	a, b := &socketd.Connection{Socket: "alone"}, &socketd.Connection{Socket: "alone"}
	for _, c := range []*socketd.Connection{a, b} {
		if err := db.BeginConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.State = socketd.ConnExited
	}

	done := make(chan error, 1)
	db.FinishConnectionAsync(a, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("finish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone asynchronous finish was never committed")
	}
	if got := mustGet(t, db, a.ID); got.State != socketd.ConnExited {
		t.Errorf("row %s, want exited", got.State)
	}

	db.hist.lazyDelay = time.Hour // the writer is idle: it reads this at the next request
	db.FinishConnectionAsync(b, func(err error) { done <- err })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("finish queued at close: %v", err)
		}
	default:
		t.Fatal("Close returned before the queued finish was committed")
	}
	db.FinishConnectionAsync(b, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("finish after close: %v, want ErrClosed", err)
	}
}

// committedState reads the state of row id as committed, without waiting
// for the writes queued, unlike reads through the store.
func committedState(t *testing.T, db *DB, id int64) socketd.ConnectionState {
	t.Helper()
	var state socketd.ConnectionState
	if err := db.r.QueryRowContext(testCtx(t), `SELECT state FROM connections WHERE id = ?`, id).Scan(&state); err != nil {
		t.Fatal(err)
	}
	return state
}

func mustGet(t *testing.T, db *DB, id int64) socketd.Connection {
	t.Helper()
	c, err := db.GetConnection(testCtx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBeginDoesNotWaitForLazy checks that a write someone waits for is
// committed at once, alone or with lazy finishes already queued: only a
// batch of lazy requests waits.
func TestBeginDoesNotWaitForLazy(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	db.hist.lazyDelay = time.Hour
	a := &socketd.Connection{Socket: "quick"}
	for range 2 { // alone, then with the finish of a queued behind it
		began := time.Now()
		if err := db.BeginConnection(ctx, a); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Fatalf("BeginConnection took %v: it waited for lazy requests", took)
		}
		a.State = socketd.ConnExited
		db.FinishConnectionAsync(a, func(error) {})
		a = &socketd.Connection{Socket: "quick"}
	}
}
