package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/metric"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/socketd/socketd"
)

// Group commit bounds. A batch holds what is queued when the writer is
// ready, up to maxBatch requests, so a quiet daemon commits each row at once
// and a busy one commits hundreds per transaction. The queue holds several
// batches, so that callers rarely wait to enqueue while one commits.
const (
	maxBatch = 512
	queueLen = 8 * maxBatch
)

// lazyCommit bounds how long a batch of lazy requests (see
// BeginConnectionAsync) waits for a request someone waits for: a read, or
// a write made with BeginConnection or FinishConnection, which then commits
// them all at once. A busy daemon thus commits the rows of its last 20 ms
// of connections in one transaction, instead of one or two per connection.
const lazyCommit = 20 * time.Millisecond

// retryDelay is how often a failed transaction's lazy requests are tried
// again. Meanwhile the store takes no new row (see failure).
const retryDelay = time.Second

// op is what a request asks the writer to do.
type op uint8

const (
	opBegin op = iota + 1
	opFinish
	opInterrupt
	opFlush // writes nothing: its commit is every request queued before it
)

// A request moves from queued to taken when the writer picks it, or to
// abandoned when its caller's context ends first; the writer skips an
// abandoned request, so it is never written.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// request is one caller's write. The writer fills in the results and err,
// then sends err on done, or calls then with it; the caller reads the
// results after receiving it.
type request struct {
	op    op
	c     socketd.Connection // a copy: the caller's is never touched here
	now   int64              // opInterrupt: the time to end the rows at
	state atomic.Int32
	done  chan error
	then  func(error) // instead of done, for a lazy request nobody waits for

	err        error
	durationMS int64 // opFinish: the duration as stored
	n          int64 // opInterrupt: rows changed
}

func newRequest(o op) *request {
	return &request{op: o, done: make(chan error, 1)}
}

// lazy reports whether nobody waits for r: it may wait for a commit that
// someone does wait for (see lazyCommit).
func (r *request) lazy() bool { return r.then != nil }

// answer hands r's outcome to its caller.
func (r *request) answer(err error) {
	if r.then != nil {
		r.then(err)
		return
	}
	r.done <- err
}

// writer is the single goroutine that writes connection history. Callers
// queue requests; it commits each batch in one transaction and then answers
// every caller, so that many callers share one commit.
type writer struct {
	db   *sql.DB
	reqs chan *request
	// wake tells the writer, waiting to commit lazy requests, to commit
	// now: a request someone waits for is queued, or the queue is full, or
	// close has come. Lazy requests do not wake it, so that a busy daemon
	// wakes it once a commit rather than at every connection.
	wake  chan struct{}
	begun *begunFile // emptied of each begun row once it is committed

	// pending counts the requests queued and not yet answered.
	pending atomic.Int64
	// commits, once Instrument has set it, records each commit's time.
	commits atomic.Pointer[metric.Float64Histogram]

	// retry holds the lazy requests of failed transactions, oldest first:
	// they go first into the next, which run starts after retryDelay at
	// the latest. failing is the last failure while retry is not empty.
	retry   []*request
	failing atomic.Pointer[error]
	// lost holds the ids of rows begun lazily that failed alone, until
	// their finish comes: it must not update whatever row has that id.
	lost map[int64]struct{}

	// mu guards closed; senders hold it for reading while they enqueue, so
	// that close can close reqs once no send is in flight.
	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}

	// st is touched by the writer's goroutine only, and by close once that
	// has stopped.
	st stmts

	// beforeBatch, when set (by tests, before the first request), is called
	// with each batch before its transaction begins.
	beforeBatch func([]*request)
	// lazyDelay is lazyCommit unless a test sets it before the first
	// request.
	lazyDelay time.Duration
}

const (
	insertSQL = `INSERT INTO connections (id, socket, state, remote_ip, remote_port, local_ip, local_port,
		pid, started_at, ended_at, duration_ms, exit_code, signal, bytes_in, bytes_out, error,
		peer_pid, peer_uid, peer_gid, uid, reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// finishSQL keeps a pid and a uid recorded earlier when the caller
	// gives none.
	// It returns nothing: an UPDATE ... RETURNING costs twice a plain one.
	finishSQL = `UPDATE connections SET state = ?, ended_at = ?, duration_ms = ?,
		exit_code = ?, signal = ?, bytes_in = ?, bytes_out = ?, error = ?, pid = COALESCE(?, pid),
		uid = COALESCE(?, uid), reason = ?
		WHERE id = ?`
	startedSQL = `SELECT started_at FROM connections WHERE id = ?`
	logSQL     = `INSERT OR REPLACE INTO connection_logs (connection_id, log) VALUES (?, ?)`
)

// interruptSQL ends every running row. The state is spelled out (stateTerm)
// so that it reads the running rows through connections_state_id, not the
// whole history.
var interruptSQL = `UPDATE connections SET state = ?, ended_at = ?,
	duration_ms = MAX(0, (? - started_at) / 1000000) WHERE ` + stateTerm("state", socketd.ConnRunning)

// newWriter prepares the writer's statements on db and starts it.
func newWriter(ctx context.Context, db *sql.DB, begun *begunFile) (*writer, error) {
	w := &writer{
		db:        db,
		begun:     begun,
		reqs:      make(chan *request, queueLen),
		wake:      make(chan struct{}, 1),
		stopped:   make(chan struct{}),
		lazyDelay: lazyCommit,
		lost:      map[int64]struct{}{},
	}
	// Prepare now, so that a schema the statements do not fit stops Open.
	if err := w.raw(ctx, func(c *sqlite3.SQLiteConn) error { return w.st.prepare(c) }); err != nil {
		return nil, fmt.Errorf("prepare history writer: %w", err)
	}
	go w.run()
	return w, nil
}

// raw runs f with the write pool's driver connection, which it holds
// meanwhile.
func (w *writer) raw(ctx context.Context, f func(*sqlite3.SQLiteConn) error) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("history writer: driver connection of type %T", dc)
		}
		return f(c)
	})
}

// do queues r and waits until it is committed or has failed (see wait).
func (w *writer) do(ctx context.Context, r *request) error {
	if err := w.send(ctx, r); err != nil {
		return err
	}
	return w.wait(ctx, r)
}

// send queues r. It returns ctx's error if ctx ends before r could be
// queued, and ErrClosed after close. Once it has returned nil, r is
// answered: through r.done, or r.then if set (on the writer's goroutine).
func (w *writer) send(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	w.pending.Add(1)
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		w.pending.Add(-1)
		return ctx.Err()
	}
	if !r.lazy() || len(w.reqs) >= maxBatch {
		w.signal()
	}
	return nil
}

// signal wakes the writer if it waits to commit lazy requests.
func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// wait waits for the outcome of r, which send queued. If ctx ends while r
// is still queued, r is withdrawn and ctx's error returned; once the writer
// has taken r, wait waits for the transaction's outcome, which is a batch's
// commit away, so that the caller learns what was written.
func (w *writer) wait(ctx context.Context, r *request) error {
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		return <-r.done
	}
}

// flush returns once every request queued before it has been committed or
// has failed, or with ctx's error if ctx ends first. Reads call it, so
// that they see every write made before them.
func (w *writer) flush(ctx context.Context) error {
	if w.pending.Load() == 0 {
		return nil
	}
	// A failed write fails its batch, the flush with it; the flush has done
	// its work all the same. After close nothing is queued.
	_ = w.do(ctx, newRequest(opFlush))
	return ctx.Err()
}

// close refuses new requests, waits for the writer to commit those already
// queued and releases its statements.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	w.signal()
	<-w.stopped
	_ = w.raw(context.Background(), func(*sqlite3.SQLiteConn) error {
		w.st.close()
		return nil
	})
}

// run is the writer goroutine. It takes the first queued request, drains
// what else is queued up to maxBatch, and commits them together; a batch of
// lazy requests only first waits up to lazyCommit for one that is not.
// Requests to retry go first, and are retried after retryDelay if nothing
// comes. It returns once reqs is closed and empty, after a last try of what
// is to retry.
func (w *writer) run() {
	defer close(w.stopped)
	batch := make([]*request, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for open := true; open; {
		var r *request
		if len(w.retry) == 0 {
			r, open = <-w.reqs
		} else {
			timer.Reset(retryDelay)
			select {
			case r, open = <-w.reqs:
			case <-timer.C:
			}
			timer.Stop()
		}
		retrying := len(w.retry) > 0
		batch = append(batch[:0], w.retry...)
		clear(w.retry)
		w.retry = w.retry[:0]
		if r != nil {
			// A signal already given is for a request queued before
			// this one, which fill takes, or for one that is gone.
			select {
			case <-w.wake:
			default:
			}
			batch = append(batch, r)
			var urgent bool
			urgent, open = w.fill(&batch, !r.lazy())
			if !urgent && open && !retrying && len(batch) < maxBatch {
				open = w.waitUrgent(&batch, timer)
			}
		}
		w.commit(batch)
		clear(batch) // drop the references until the slots are reused
	}
	if len(w.retry) > 0 {
		batch = append(batch[:0], w.retry...)
		w.retry = nil
		w.commit(batch)
	}
	// Still failing: the rows stay in the begun file for the next start.
	if len(w.retry) > 0 {
		w.answer(w.retry, w.failure())
		w.retry = nil
	}
}

// waitUrgent waits up to lazyDelay, or until signalled (see wake), and then
// adds to a batch of lazy requests what has been queued meanwhile. It
// reports whether reqs is still open.
func (w *writer) waitUrgent(batch *[]*request, timer *time.Timer) bool {
	timer.Reset(w.lazyDelay)
	select {
	case <-w.wake:
	case <-timer.C:
	}
	timer.Stop()
	_, open := w.fill(batch, false)
	return open
}

// fill adds to batch what is queued, without waiting, up to maxBatch. It
// reports whether the batch now holds a request that is not lazy (urgent
// says whether it did before), and whether reqs is still open.
func (w *writer) fill(batch *[]*request, urgent bool) (bool, bool) {
	for len(*batch) < maxBatch {
		select {
		case r, ok := <-w.reqs:
			if !ok {
				return urgent, false
			}
			*batch = append(*batch, r)
			urgent = urgent || !r.lazy()
		default:
			return urgent, true
		}
	}
	return urgent, true
}

// commit writes the live requests of batch in one transaction and answers
// each. If a request cannot be written through its own fault, it alone
// fails and the others are committed without it. If the transaction
// fails, the requests someone waits for fail, and the lazy ones are kept
// to retry.
//
// A begun row leaves the begun file once it is committed; one that will
// not be written (withdrawn by its caller, failed alone, or failed with a
// caller waiting) is marked void there, which keeps its id from being
// handed out again. A row kept to retry stays as it is, for the next start
// to recover should socketd stop first.
func (w *writer) commit(batch []*request) {
	live := make([]*request, 0, len(batch))
	writes := false
	for _, r := range batch {
		if r.state.Load() == reqTaken || r.state.CompareAndSwap(reqQueued, reqTaken) {
			live = append(live, r)
			writes = writes || r.op != opFlush
		} else {
			w.voidBegun(r)
			w.pending.Add(-1)
		}
	}
	if !writes {
		w.answer(live, nil)
		return
	}
	if w.beforeBatch != nil {
		w.beforeBatch(live)
	}
	start := time.Now()
	for len(live) > 0 {
		bad, err := w.exec(live)
		if err != nil && bad >= 0 {
			r := live[bad]
			w.voidBegun(r)
			if r.op == opBegin && r.lazy() {
				w.lost[r.c.ID] = struct{}{}
			}
			w.answer(live[bad:bad+1], err)
			live = slices.Delete(live, bad, bad+1)
			continue
		}
		if err != nil {
			w.failed(live, err)
			return
		}
		w.failing.Store(nil)
		w.recordCommit(start)
		for _, r := range live {
			if r.op == opBegin && r.err == nil {
				w.begun.drop(r.c.ID)
			}
		}
		w.answer(live, nil)
		return
	}
}

// failed handles the requests of a transaction that failed with err.
func (w *writer) failed(rs []*request, err error) {
	for _, r := range rs {
		if r.lazy() {
			w.retry = append(w.retry, r)
			continue
		}
		w.voidBegun(r)
		w.answer([]*request{r}, err)
	}
	if len(w.retry) > 0 {
		w.failing.Store(&err)
	}
}

// failure returns why the history cannot be written now, or nil. While it
// is not nil the store takes no new row, so that no handler starts whose
// row might never be committed.
func (w *writer) failure() error {
	if err := w.failing.Load(); err != nil {
		return *err
	}
	return nil
}

// answer answers each of rs with err, if not nil, or its own error.
func (w *writer) answer(rs []*request, err error) {
	for _, r := range rs {
		if err != nil {
			r.err = err
		}
		if r.op == opFinish {
			delete(w.lost, r.c.ID) // its row's last request
		}
		w.pending.Add(-1)
		r.answer(r.err)
	}
}

// voidBegun marks the begun file's slot of r void if r begins a row.
func (w *writer) voidBegun(r *request) {
	if r.op == opBegin {
		w.begun.void(r.c.ID)
	}
}

// exec applies rs in one transaction and commits it. An *socketd.Error from
// a request (a connection not found) fails that request only: it has
// written nothing, so the transaction goes on. A constraint the request
// breaks rolls the transaction back and is returned with the request's
// index. Any other error rolls it back and is returned with -1: it is the
// database's, not the request's.
//
// It works on the driver's connection, not through database/sql: that
// gives every transaction a cancellable context, for which the driver runs
// every statement on a goroutine of its own, and the transaction one more
// that waits for the context; at many commits a second, those goroutines
// and their wake-ups cost more than the SQL.
func (w *writer) exec(rs []*request) (int, error) {
	bad := -1
	err := w.raw(context.Background(), func(c *sqlite3.SQLiteConn) error {
		if err := w.st.prepare(c); err != nil {
			return err
		}
		tx, err := c.BeginTx(context.Background(), driver.TxOptions{})
		if err != nil {
			return err
		}
		for i, r := range rs {
			r.err = w.apply(r)
			var se *socketd.Error
			if r.err != nil && !errors.As(r.err, &se) {
				tx.Rollback()
				var sqe sqlite3.Error
				if errors.As(r.err, &sqe) && sqe.Code == sqlite3.ErrConstraint {
					bad = i
				}
				return r.err
			}
		}
		return tx.Commit()
	})
	return bad, err
}

// stmts are the writer's statements, prepared on one driver connection.
type stmts struct {
	conn                                    *sqlite3.SQLiteConn
	insert, finish, started, log, interrupt driver.Stmt
	args                                    []driver.NamedValue // reused by exec
}

// prepare prepares the statements on c, unless they already are: the pool
// keeps its one connection, but replaces it should it break.
func (st *stmts) prepare(c *sqlite3.SQLiteConn) error {
	if st.conn == c {
		return nil
	}
	st.close()
	for _, p := range []struct {
		stmt *driver.Stmt
		sql  string
	}{
		{&st.insert, insertSQL}, {&st.finish, finishSQL}, {&st.started, startedSQL},
		{&st.log, logSQL}, {&st.interrupt, interruptSQL},
	} {
		s, err := c.Prepare(p.sql)
		if err != nil {
			st.close()
			return err
		}
		*p.stmt = s
	}
	st.conn = c
	return nil
}

func (st *stmts) close() {
	for _, s := range []*driver.Stmt{&st.insert, &st.finish, &st.started, &st.log, &st.interrupt} {
		if *s != nil {
			(*s).Close()
			*s = nil
		}
	}
	st.conn = nil
}

// exec runs s with args, each an int64, string, []byte or nil.
func (st *stmts) exec(s driver.Stmt, args ...driver.Value) (driver.Result, error) {
	st.args = st.args[:0]
	for i, v := range args {
		st.args = append(st.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	defer clear(st.args) // keep no reference to the request's data
	return s.(driver.StmtExecContext).ExecContext(context.Background(), st.args)
}

// apply writes r. A finish of a row whose begin failed alone writes
// nothing: the id may be another's.
func (w *writer) apply(r *request) error {
	if r.op == opFinish {
		if _, ok := w.lost[r.c.ID]; ok {
			return socketd.Errorf(socketd.CodeNotFound, "connection %d: its row could not be written", r.c.ID)
		}
	}
	return w.st.apply(r)
}

func (st *stmts) apply(r *request) error {
	c := &r.c
	switch r.op {
	case opBegin:
		_, err := st.exec(st.insert,
			c.ID, c.Socket, string(c.State), c.RemoteIP, int64(c.RemotePort), c.LocalIP, int64(c.LocalPort),
			nullInt(c.PID), toNanos(c.StartedAt), nullTime(c.EndedAt), nullInt64(c.DurationMS), nullIntPtr(c.ExitCode),
			c.Signal, c.BytesIn, c.BytesOut, c.Error, nullIntPtr(c.PeerPID), nullIntPtr(c.PeerUID), nullIntPtr(c.PeerGID), nullIntPtr(c.UID), c.Reason)
		if err != nil {
			return err
		}
		return st.saveLog(c.ID, c.Log)
	case opFinish:
		ended := toNanos(*c.EndedAt)
		if c.DurationMS == nil {
			// The caller does not know when the connection started.
			started, err := st.startedAt(c.ID)
			if err != nil {
				return err
			}
			d := max(0, (ended-started)/int64(time.Millisecond))
			c.DurationMS = &d
		}
		r.durationMS = *c.DurationMS
		res, err := st.exec(st.finish,
			string(c.State), ended, *c.DurationMS, nullIntPtr(c.ExitCode), c.Signal,
			c.BytesIn, c.BytesOut, c.Error, nullInt(c.PID), nullIntPtr(c.UID), c.Reason, c.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFoundConnection(c.ID)
		}
		return st.saveLog(c.ID, c.Log)
	case opInterrupt:
		res, err := st.exec(st.interrupt, string(socketd.ConnInterrupted), r.now, r.now)
		if err != nil {
			return err
		}
		r.n, err = res.RowsAffected()
		return err
	case opFlush:
		return nil
	}
	return fmt.Errorf("unknown history op %d", r.op)
}

// startedAt returns the stored start of connection id.
func (st *stmts) startedAt(id int64) (int64, error) {
	rows, err := st.started.(driver.StmtQueryContext).QueryContext(context.Background(),
		[]driver.NamedValue{{Ordinal: 1, Value: id}})
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err == io.EOF {
		return 0, notFoundConnection(id)
	} else if err != nil {
		return 0, err
	}
	started, ok := dest[0].(int64)
	if !ok {
		return 0, fmt.Errorf("connection %d: started_at is %T", id, dest[0])
	}
	return started, nil
}

func (st *stmts) saveLog(id int64, log []byte) error {
	if len(log) == 0 {
		return nil
	}
	_, err := st.exec(st.log, id, log)
	return err
}

// nullInt stores 0 as NULL, for columns where 0 means unknown.
func nullInt(n int) driver.Value {
	if n == 0 {
		return nil
	}
	return int64(n)
}

// nullIntPtr stores nil as NULL.
func nullIntPtr(n *int) driver.Value {
	if n == nil {
		return nil
	}
	return int64(*n)
}

// nullInt64 stores nil as NULL.
func nullInt64(n *int64) driver.Value {
	if n == nil {
		return nil
	}
	return *n
}

// nullTime stores a nil time as NULL.
func nullTime(t *time.Time) driver.Value {
	if t == nil {
		return nil
	}
	return toNanos(*t)
}
