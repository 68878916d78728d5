package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd"
)

// BeginConnection records a new connection and returns once the row is
// committed, with c.ID set. c.State defaults to running and c.StartedAt to
// now; every other field of c is stored as given, so a connection refused
// before any handler ran can be recorded whole in one call. A non-empty c.Log
// is stored as its log.
//
// If ctx ends while the row is still queued, nothing is written and ctx's
// error is returned. After Close it returns ErrClosed.
func (db *DB) BeginConnection(ctx context.Context, c *socketd.Connection) error {
	r, err := beginRequest(c)
	if err != nil {
		return err
	}
	saved := *c
	if err := db.queueBegin(ctx, r, c); err != nil {
		return fmt.Errorf("begin connection: %w", err)
	}
	if err := db.hist.wait(ctx, r); err != nil {
		*c = saved
		return fmt.Errorf("begin connection %d: %w", r.c.ID, err)
	}
	return nil
}

// BeginConnectionAsync is BeginConnection for a caller that does not wait
// for the commit: it sets c.ID, c.State and c.StartedAt as BeginConnection
// does, writes the row to the begun file, queues it and returns. From then
// on the row is as safe from a crash of socketd as a commit would make it:
// if socketd stops before the commit, the next Open adds it to the history,
// as interrupted.
//
// Nobody waits for the row, so it is committed with the next write that
// someone waits for, or within 20 ms: a busy daemon commits many
// connections at a time. Reads wait for the rows queued before them.
//
// It returns an error, and never calls done, if c is invalid, the store is
// closed, or the history cannot be written: after a failed transaction,
// until a retry commits its rows. Otherwise done is called once with the
// outcome of the commit, on the history writer's goroutine, so it must be
// quick and must not wait for the history. A row whose transaction fails
// is retried every second until it is committed; if Close comes first,
// done reports the failure and the row stays in the begun file, for the
// next Open.
func (db *DB) BeginConnectionAsync(c *socketd.Connection, done func(error)) error {
	r, err := beginRequest(c)
	if err != nil {
		return err
	}
	r.done = nil // answered through then
	r.then = func(err error) {
		if err != nil {
			err = fmt.Errorf("begin connection %d: %w", r.c.ID, err)
		}
		done(err)
	}
	if err := db.queueBegin(context.Background(), r, c); err != nil {
		return fmt.Errorf("begin connection: %w", err)
	}
	return nil
}

// beginRequest checks c and makes the request that records it.
func beginRequest(c *socketd.Connection) (*request, error) {
	if c == nil {
		return nil, errors.New("begin connection: no connection")
	}
	r := newRequest(opBegin)
	r.c = *c
	if r.c.State == "" {
		r.c.State = socketd.ConnRunning
	}
	if !r.c.State.Valid() {
		return nil, fmt.Errorf("begin connection: unknown state %q", r.c.State)
	}
	if r.c.StartedAt.IsZero() {
		r.c.StartedAt = time.Now()
	}
	return r, nil
}

// queueBegin gives r's row the next id, writes it to the begun file and
// queues it. Ids are handed out in the order rows are queued, which the
// begun file relies on. It sets c's ID, State and StartedAt to the row's
// before queueing, since r may be answered at once, and leaves c as it was
// if r cannot be queued.
func (db *DB) queueBegin(ctx context.Context, r *request, c *socketd.Connection) error {
	db.idMu.Lock()
	defer db.idMu.Unlock()
	if db.begun.m == nil {
		return ErrClosed
	}
	if err := db.hist.failure(); err != nil {
		return fmt.Errorf("the history cannot be written: %w", err)
	}
	r.c.ID = db.lastID + 1
	if err := db.begun.put(&r.c); err != nil {
		return err
	}
	saved := *c
	c.ID, c.State, c.StartedAt = r.c.ID, r.c.State, r.c.StartedAt
	if err := db.hist.send(ctx, r); err != nil {
		db.begun.drop(r.c.ID) // the id is handed out again
		*c = saved
		return err
	}
	db.lastID = r.c.ID
	return nil
}

// FinishConnection records how connection c.ID ended and returns once that is
// committed. It stores c's State (which must be final, not running), EndedAt
// (now if nil), DurationMS (if nil, EndedAt less StartedAt, or less the
// stored start when c.StartedAt is zero), ExitCode, Signal, BytesIn,
// BytesOut, Error and PID (a zero PID keeps the stored one), and c.Log as
// the connection's log when it is not empty. It sets c.EndedAt and
// c.DurationMS to what was stored. It returns an error with code
// CodeNotFound if there is no such connection.
//
// If ctx ends while the update is still queued, nothing is written and ctx's
// error is returned. After Close it returns ErrClosed.
func (db *DB) FinishConnection(ctx context.Context, c *socketd.Connection) error {
	r, err := finishRequest(c)
	if err != nil {
		return err
	}
	if err := db.hist.do(ctx, r); err != nil {
		return fmt.Errorf("finish connection %d: %w", c.ID, err)
	}
	d := r.durationMS
	c.EndedAt, c.DurationMS = r.c.EndedAt, &d
	return nil
}

// FinishConnectionAsync is FinishConnection for a caller that does not wait:
// it queues the update and returns, leaving c untouched. done is called once
// with the outcome: on the history writer's goroutine, so it must be quick
// and must not wait for the history; or on the caller's, before this
// returns, if c is invalid or the store closed.
//
// Nobody waits for the update, so it is committed with the next write that
// someone waits for, or within 20 ms. Reads wait for the updates queued
// before them.
func (db *DB) FinishConnectionAsync(c *socketd.Connection, done func(error)) {
	r, err := finishRequest(c)
	if err != nil {
		done(err)
		return
	}
	id := c.ID
	r.done = nil // answered through then
	r.then = func(err error) {
		if err != nil {
			err = fmt.Errorf("finish connection %d: %w", id, err)
		}
		done(err)
	}
	if err := db.hist.send(context.Background(), r); err != nil {
		done(fmt.Errorf("finish connection %d: %w", id, err))
	}
}

// finishRequest checks c and makes the request that finishes it.
func finishRequest(c *socketd.Connection) (*request, error) {
	if c == nil {
		return nil, errors.New("finish connection: no connection")
	}
	if c.State == socketd.ConnRunning || !c.State.Valid() {
		return nil, fmt.Errorf("finish connection %d: %q is not a final state", c.ID, c.State)
	}
	r := newRequest(opFinish)
	r.c = *c
	ended := time.Now()
	if c.EndedAt != nil {
		ended = *c.EndedAt
	}
	r.c.EndedAt = &ended
	if c.DurationMS == nil && !c.StartedAt.IsZero() {
		// Both times usually carry a monotonic reading, which a wall-clock
		// step cannot skew.
		d := max(0, ended.Sub(c.StartedAt).Milliseconds())
		r.c.DurationMS = &d
	}
	return r, nil
}

// InterruptRunning marks every connection still running as interrupted,
// ended now, and returns how many it marked. The daemon calls it at start,
// for the rows a daemon that died left behind.
func (db *DB) InterruptRunning(ctx context.Context) (int64, error) {
	r := newRequest(opInterrupt)
	r.now = toNanos(time.Now())
	if err := db.hist.do(ctx, r); err != nil {
		return 0, fmt.Errorf("interrupt running connections: %w", err)
	}
	return r.n, nil
}

// connColumns are the columns scanConnection reads, in its order.
const connColumns = `id, socket, state, remote_ip, remote_port, local_ip, local_port, pid,
	started_at, ended_at, duration_ms, exit_code, signal, bytes_in, bytes_out, error,
	peer_pid, peer_uid, peer_gid, uid, reason`

// connColumnsC is connColumns of the table named c, for a join.
var connColumnsC = "c." + strings.Join(strings.Fields(strings.ReplaceAll(connColumns, ",", " ")), ", c.")

// ListConnections returns a page of the connections f selects, newest
// (highest id) first, and the cursor of the next page, "" after the last.
// A zero f.Limit means socketd.DefaultListLimit. A limit out of range, an
// unknown state or a cursor this store did not make returns an error with
// code CodeInvalid. Logs are not read.
func (db *DB) ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error) {
	qs, limit, err := listQueries(f)
	if err != nil {
		return nil, "", err
	}
	if err := db.hist.flush(ctx); err != nil {
		return nil, "", fmt.Errorf("list connections: %w", err)
	}
	// Several queries read one snapshot, so that no row moves from what
	// one reads to what another does in between.
	var q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	} = db.r
	if len(qs) > 1 {
		tx, err := db.r.BeginTx(ctx, nil)
		if err != nil {
			return nil, "", fmt.Errorf("list connections: %w", err)
		}
		defer tx.Rollback()
		q = tx
	}
	cs := make([]socketd.Connection, 0, min(limit+1, 64))
	for _, lq := range qs {
		if len(cs) > limit {
			break
		}
		// One row more than the page tells whether there is a next page.
		rows, err := q.QueryContext(ctx, lq.sql+" LIMIT ?", append(lq.args, limit+1-len(cs))...)
		if err != nil {
			return nil, "", fmt.Errorf("list connections: %w", err)
		}
		for rows.Next() {
			c, err := scanConnection(rows)
			if err != nil {
				rows.Close()
				return nil, "", fmt.Errorf("list connections: %w", err)
			}
			cs = append(cs, c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, "", fmt.Errorf("list connections: %w", err)
		}
	}
	if len(cs) <= limit {
		return cs, "", nil
	}
	cs = cs[:limit]
	return cs, encodeCursor(cs[limit-1].ID), nil
}

// listQuery is one query of a page, without its LIMIT.
type listQuery struct {
	sql  string
	args []any
}

// listQueries returns the queries of a page of ListConnections, to be run in
// order in one snapshot, each for what the page still lacks (their rows
// follow each other in id order), and the page's size.
//
// Every page is a walk down the ids, from the cursor or the top of its time
// range, that stops after limit+1 matching rows: no sort, and no cost for
// how deep the page is or how far in the past its range lies. A time range
// and a remote address are looked up through the blocks of migrations
// 000005 and 000006, a socket and a state other than exited through their
// indexes on (column, id).
func listQueries(f socketd.ConnectionFilter) ([]listQuery, int, error) {
	limit := f.Limit
	if limit == 0 {
		limit = socketd.DefaultListLimit
	}
	if limit < 0 || limit > socketd.MaxListLimit {
		return nil, 0, socketd.Errorf(socketd.CodeInvalid,
			"limit %d is out of range: it must be between 1 and %d", f.Limit, socketd.MaxListLimit)
	}
	if f.State != "" && !f.State.Valid() {
		return nil, 0, socketd.Errorf(socketd.CodeInvalid, "state %q is not one of %s", f.State, socketd.ConnectionStateList())
	}
	var (
		before int64 // the cursor: only ids below it; 0 for none
		err    error
	)
	if f.Cursor != "" {
		if before, err = decodeCursor(f.Cursor); err != nil {
			return nil, 0, err
		}
	}
	if f.RemoteIP != "" {
		var open, sealed where
		return []listQuery{
			{openBlock(&open, f, before), open.args},
			{byAddress(&sealed, f, before), sealed.args},
		}, limit, nil
	}
	var w where
	return []listQuery{{byID(&w, f, before, connColumns), w.args}}, limit, nil
}

// stateTerm is the term that selects state s. The state is spelled out, not
// bound, and every state but exited repeats the partial index's condition:
// SQLite uses connections_state_id (migration 000007) only for a query that
// visibly implies it. s is one of the known states, all plain words.
func stateTerm(column string, s socketd.ConnectionState) string {
	t := column + " = '" + string(s) + "'"
	if s != socketd.ConnExited {
		t += " AND " + column + " <> '" + string(socketd.ConnExited) + "'"
	}
	return t
}

// byID adds to w the terms of a page that walks connections, or the index
// of its socket or state filter, down from the highest id it may hold, and
// returns the query of columns.
func byID(w *where, f socketd.ConnectionFilter, before int64, columns string) string {
	if f.Socket != "" {
		w.and("socket = ?", f.Socket)
	}
	if f.State != "" {
		w.and(stateTerm("state", f.State))
	}
	// upper bounds the ids from above (id <= upper), "" for no bound. The
	// cursor and a time range both bound it; one bound made of both lets
	// SQLite start the walk at the right place on every page, where two
	// would leave one of them to be tested row by row.
	var (
		upper     string
		upperArgs []any
	)
	if !f.Since.IsZero() || !f.Until.IsZero() {
		// The range is first mapped to the ids of the blocks whose starts
		// overlap it: a superset of the matching rows, found by scanning the
		// small blocks table. The started_at terms then keep exactly the
		// rows that match. With no overlapping block the subqueries are
		// NULL, and so is min(?, NULL): the page is empty, as it must be.
		var overlap where
		if !f.Since.IsZero() {
			since := toNanos(f.Since)
			w.and("started_at >= ?", since)
			overlap.and("max_started >= ?", since)
		}
		if !f.Until.IsZero() {
			until := toNanos(f.Until)
			w.and("started_at < ?", until)
			overlap.and("min_started < ?", until)
		}
		blocks := " FROM connection_blocks" + overlap.clause() + ")"
		if !f.Since.IsZero() {
			w.and("id >= (SELECT min(min_id)"+blocks, overlap.args...)
		}
		if !f.Until.IsZero() {
			upper, upperArgs = "(SELECT max(max_id)"+blocks, overlap.args
		}
	}
	if before > 0 {
		if upper == "" {
			upper, upperArgs = "?", []any{before - 1}
		} else {
			upper, upperArgs = "min(?, "+upper+")", append([]any{before - 1}, upperArgs...)
		}
	}
	if upper != "" {
		w.and("id <= "+upper, upperArgs...)
	}
	// The index is named: an id range looks as selective to SQLite as a
	// socket, so statistics of a history with few sockets (or a small one)
	// lead it to walk every socket's ids through the range instead, which
	// for a rare socket in a wide range is a walk of the history. Exited
	// rows have no index: they are most of the history, so a walk down the
	// ids finds a page of them at once.
	from := " FROM connections"
	switch {
	case f.Socket != "":
		from += " INDEXED BY connections_socket_id"
	case f.State != "" && f.State != socketd.ConnExited:
		from += " INDEXED BY connections_state_id"
	}
	return "SELECT " + columns + from + w.clause() + " ORDER BY id DESC"
}

// openBlock adds to w the terms of a page of the connections from
// f.RemoteIP in the open block (migration 000006), whose addresses are not
// indexed yet, and returns the query: a walk down its ids, at most 4096.
// Its rows come before those byAddress finds in the sealed blocks below it.
func openBlock(w *where, f socketd.ConnectionFilter, before int64) string {
	w.and("id >= (SELECT block << 12 FROM connection_blocks WHERE sealed = 0 ORDER BY block DESC LIMIT 1)")
	w.and("remote_ip = ?", f.RemoteIP)
	if !f.Since.IsZero() {
		w.and("started_at >= ?", toNanos(f.Since))
	}
	if !f.Until.IsZero() {
		w.and("started_at < ?", toNanos(f.Until))
	}
	if before > 0 {
		w.and("id < ?", before)
	}
	if f.Socket != "" {
		w.and("socket = ?", f.Socket)
	}
	if f.State != "" {
		w.and(stateTerm("state", f.State))
	}
	// Named, so that no statistics make SQLite prefer another index to
	// the short walk of the open block.
	return "SELECT " + connColumns + " FROM connections NOT INDEXED" + w.clause() + " ORDER BY id DESC"
}

// byAddress adds to w the terms of a page of the connections from
// f.RemoteIP, and returns the query. It walks the blocks newest first (only
// those that overlap f's time range and lie below the cursor), seeks the
// address in each block's part of connection_block_ips, and reads those
// rows' ids downwards: as blocks partition the ids in order, that is id
// order, with no sort. Its cost is a seek per block the page spans, all of
// them for an address with fewer rows than a page.
func byAddress(w *where, f socketd.ConnectionFilter, before int64) string {
	w.and("x.block = b.block")
	w.and("x.remote_ip = ?", f.RemoteIP)
	w.and("c.id = x.id")
	if !f.Since.IsZero() {
		since := toNanos(f.Since)
		w.and("b.max_started >= ?", since)
		w.and("c.started_at >= ?", since)
	}
	if !f.Until.IsZero() {
		until := toNanos(f.Until)
		w.and("b.min_started < ?", until)
		w.and("c.started_at < ?", until)
	}
	if before > 0 {
		w.and("b.min_id < ?", before)
		w.and("x.id < ?", before)
	}
	if f.Socket != "" {
		w.and("c.socket = ?", f.Socket)
	}
	if f.State != "" {
		w.and(stateTerm("c.state", f.State))
	}
	// CROSS JOIN fixes the loops' order, which the ORDER BY depends on to
	// need no sort.
	return "SELECT " + connColumnsC +
		" FROM connection_blocks b CROSS JOIN connection_block_ips x CROSS JOIN connections c" +
		w.clause() + " ORDER BY b.block DESC, x.id DESC"
}

// where collects the terms of a WHERE clause and their arguments.
type where struct {
	terms []string
	args  []any
}

func (w *where) and(term string, args ...any) {
	w.terms = append(w.terms, term)
	w.args = append(w.args, args...)
}

// clause returns " WHERE" and the terms joined by AND, or "" if there are
// none.
func (w *where) clause() string {
	if len(w.terms) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.terms, " AND ")
}

// GetConnection returns connection id, without its log, or an error with
// code CodeNotFound.
func (db *DB) GetConnection(ctx context.Context, id int64) (socketd.Connection, error) {
	if err := db.hist.flush(ctx); err != nil {
		return socketd.Connection{}, fmt.Errorf("get connection %d: %w", id, err)
	}
	row := db.r.QueryRowContext(ctx, "SELECT "+connColumns+" FROM connections WHERE id = ?", id)
	c, err := scanConnection(row)
	if errors.Is(err, sql.ErrNoRows) {
		return socketd.Connection{}, notFoundConnection(id)
	}
	if err != nil {
		return socketd.Connection{}, fmt.Errorf("get connection %d: %w", id, err)
	}
	return c, nil
}

// ConnectionLog returns the captured standard error of connection id, empty
// if it has none, or an error with code CodeNotFound if there is no such
// connection.
func (db *DB) ConnectionLog(ctx context.Context, id int64) ([]byte, error) {
	if err := db.hist.flush(ctx); err != nil {
		return nil, fmt.Errorf("get connection log %d: %w", id, err)
	}
	var log []byte
	err := db.r.QueryRowContext(ctx,
		`SELECT l.log FROM connections c LEFT JOIN connection_logs l ON l.connection_id = c.id
		 WHERE c.id = ?`, id).Scan(&log)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFoundConnection(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get connection log %d: %w", id, err)
	}
	if log == nil {
		log = []byte{}
	}
	return log, nil
}

func scanConnection(sc scanner) (socketd.Connection, error) {
	var (
		c                              socketd.Connection
		state                          string
		started                        int64
		pid, ended, duration, exitCode sql.NullInt64
		peerPID, peerUID, peerGID, uid sql.NullInt64
	)
	err := sc.Scan(&c.ID, &c.Socket, &state, &c.RemoteIP, &c.RemotePort, &c.LocalIP, &c.LocalPort, &pid,
		&started, &ended, &duration, &exitCode, &c.Signal, &c.BytesIn, &c.BytesOut, &c.Error,
		&peerPID, &peerUID, &peerGID, &uid, &c.Reason)
	if err != nil {
		return socketd.Connection{}, err
	}
	c.State = socketd.ConnectionState(state)
	c.PID = int(pid.Int64)
	c.StartedAt = fromNanos(started)
	if ended.Valid {
		t := fromNanos(ended.Int64)
		c.EndedAt = &t
	}
	if duration.Valid {
		d := duration.Int64
		c.DurationMS = &d
	}
	c.ExitCode = intPtr(exitCode)
	c.PeerPID, c.PeerUID, c.PeerGID, c.UID = intPtr(peerPID), intPtr(peerUID), intPtr(peerGID), intPtr(uid)
	return c, nil
}

func notFoundConnection(id int64) error {
	return socketd.Errorf(socketd.CodeNotFound, "connection %d not found", id)
}

// cursorPrefix versions the cursor format, so that a later format can tell
// old cursors apart.
const cursorPrefix = "c1."

// encodeCursor returns the opaque cursor of the page after the row with id
// last.
func encodeCursor(last int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(last, 10)))
}

// decodeCursor returns the id a cursor from encodeCursor holds. Anything
// else returns an error with code CodeInvalid.
func decodeCursor(s string) (int64, error) {
	bad := socketd.Errorf(socketd.CodeInvalid, "cursor is not valid: use the next_cursor of a previous page")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, bad
	}
	digits, ok := strings.CutPrefix(string(b), cursorPrefix)
	if !ok {
		return 0, bad
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id <= 0 || encodeCursor(id) != s {
		return 0, bad
	}
	return id, nil
}

// intPtr returns a nullable column's value, nil for NULL.
func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

// statsQuery returns the query of ConnectionStats and its arguments: the
// socket's rows in the range, newest first, one more than it reads.
func statsQuery(socket string, since, until time.Time) (string, []any) {
	var w where
	q := byID(&w, socketd.ConnectionFilter{Socket: socket, Since: since, Until: until}, 0,
		"started_at, state, duration_ms, exit_code, signal, reason") + " LIMIT ?"
	return q, append(w.args, maxStatsRows+1)
}

// maxStatsRows is socketd.MaxStatsRows, lowered by tests.
var maxStatsRows = socketd.MaxStatsRows

// ConnectionStats summarises the connections of socket that started from
// since to until, in steps of step (at least a second): see
// socketd.ConnectionStats. It reads the newest socketd.MaxStatsRows rows of
// the range at most, walking the socket's index down from the range's top,
// as ListConnections does.
func (db *DB) ConnectionStats(ctx context.Context, socket string, since, until time.Time, step time.Duration) (socketd.ConnectionStats, error) {
	if step < time.Second || !since.Before(until) || until.Sub(since)/step > 10000 {
		return socketd.ConnectionStats{}, socketd.Errorf(socketd.CodeInvalid,
			"stats from %s to %s in steps of %s: the range must be positive and hold at most 10000 steps of a second or more",
			since.Format(time.RFC3339), until.Format(time.RFC3339), step)
	}
	if err := db.hist.flush(ctx); err != nil {
		return socketd.ConnectionStats{}, fmt.Errorf("connection stats: %w", err)
	}
	q, args := statsQuery(socket, since, until)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return socketd.ConnectionStats{}, fmt.Errorf("connection stats: %w", err)
	}
	defer rows.Close()
	st := socketd.ConnectionStats{
		Since: since, Until: until, Step: step,
		Steps:     make([]socketd.StepCount, (until.Sub(since)+step-1)/step),
		Durations: make([]int64, len(socketd.DurationBuckets)+1),
		Outcomes:  map[string]int64{},
		Refused:   map[string]int64{},
	}
	for i := range st.Steps {
		st.Steps[i].Start = since.Add(time.Duration(i) * step)
	}
	for rows.Next() {
		var (
			started            int64
			state              socketd.ConnectionState
			duration, exitCode sql.NullInt64
			signal, reason     string
		)
		if err := rows.Scan(&started, &state, &duration, &exitCode, &signal, &reason); err != nil {
			return socketd.ConnectionStats{}, fmt.Errorf("connection stats: %w", err)
		}
		if st.Rows == maxStatsRows {
			st.Partial = true
			break
		}
		st.Rows++
		at := fromNanos(started)
		if st.From.IsZero() || at.Before(st.From) {
			st.From = at
		}
		n := &st.Steps[at.Sub(since)/step]
		if state == socketd.ConnRefused {
			n.Refused++
			st.Refused[cmp.Or(reason, "unknown")]++
			continue
		}
		n.Accepted++
		if duration.Valid {
			d := time.Duration(duration.Int64) * time.Millisecond
			b, _ := slices.BinarySearchFunc(socketd.DurationBuckets, d, func(bound, d time.Duration) int {
				return cmp.Compare(bound, d+1) // the first bound above d
			})
			st.Durations[b]++
		}
		switch {
		case signal != "":
			st.Outcomes[signal]++
		case exitCode.Valid:
			st.Outcomes["exit "+strconv.FormatInt(exitCode.Int64, 10)]++
		case state != socketd.ConnRunning:
			st.Outcomes[string(state)]++
		}
	}
	if err := rows.Err(); err != nil {
		return socketd.ConnectionStats{}, fmt.Errorf("connection stats: %w", err)
	}
	return st, nil
}
