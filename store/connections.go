package store

import (
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
	if c == nil {
		return errors.New("begin connection: no connection")
	}
	r := newRequest(opBegin)
	r.c = *c
	if r.c.State == "" {
		r.c.State = socketd.ConnRunning
	}
	if !validState(r.c.State) {
		return fmt.Errorf("begin connection: unknown state %q", r.c.State)
	}
	started := c.StartedAt
	if started.IsZero() {
		started = time.Now()
		r.c.StartedAt = started
	}
	if err := db.hist.do(ctx, r); err != nil {
		return fmt.Errorf("begin connection: %w", err)
	}
	c.ID, c.State, c.StartedAt = r.id, r.c.State, started
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
	if c == nil {
		return errors.New("finish connection: no connection")
	}
	if c.State == socketd.ConnRunning || !validState(c.State) {
		return fmt.Errorf("finish connection %d: %q is not a final state", c.ID, c.State)
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
	if err := db.hist.do(ctx, r); err != nil {
		return fmt.Errorf("finish connection %d: %w", c.ID, err)
	}
	d := r.durationMS
	c.EndedAt, c.DurationMS = &ended, &d
	return nil
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
	started_at, ended_at, duration_ms, exit_code, signal, bytes_in, bytes_out, error`

// ListConnections returns a page of the connections f selects, newest
// (highest id) first, and the cursor of the next page, "" after the last.
// A zero f.Limit means socketd.DefaultListLimit. A limit out of range, an
// unknown state or a cursor this store did not make returns an error with
// code CodeInvalid. Logs are not read.
func (db *DB) ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error) {
	q, args, limit, err := listQuery(f)
	if err != nil {
		return nil, "", err
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	cs := make([]socketd.Connection, 0, min(limit+1, 64))
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list connections: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list connections: %w", err)
	}
	if len(cs) <= limit {
		return cs, "", nil
	}
	cs = cs[:limit]
	return cs, encodeCursor(cs[limit-1].ID), nil
}

// listQuery returns the query of a page of ListConnections, its arguments and
// the page's size.
func listQuery(f socketd.ConnectionFilter) (string, []any, int, error) {
	limit := f.Limit
	if limit == 0 {
		limit = socketd.DefaultListLimit
	}
	if limit < 0 || limit > socketd.MaxListLimit {
		return "", nil, 0, socketd.Errorf(socketd.CodeInvalid,
			"limit %d is out of range: it must be between 1 and %d", f.Limit, socketd.MaxListLimit)
	}
	var (
		where []string
		args  []any
	)
	if f.Socket != "" {
		where, args = append(where, "socket = ?"), append(args, f.Socket)
	}
	if f.State != "" {
		if !validState(f.State) {
			return "", nil, 0, socketd.Errorf(socketd.CodeInvalid, "state %q is not one of %s", f.State, stateList())
		}
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.RemoteIP != "" {
		where, args = append(where, "remote_ip = ?"), append(args, f.RemoteIP)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "started_at >= ?"), append(args, toNanos(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "started_at < ?"), append(args, toNanos(f.Until))
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, 0, err
		}
		where, args = append(where, "id < ?"), append(args, after)
	}
	q := "SELECT " + connColumns + " FROM connections"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether there is a next page.
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)
	return q, args, limit, nil
}

// GetConnection returns connection id, without its log, or an error with
// code CodeNotFound.
func (db *DB) GetConnection(ctx context.Context, id int64) (socketd.Connection, error) {
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
	)
	err := sc.Scan(&c.ID, &c.Socket, &state, &c.RemoteIP, &c.RemotePort, &c.LocalIP, &c.LocalPort, &pid,
		&started, &ended, &duration, &exitCode, &c.Signal, &c.BytesIn, &c.BytesOut, &c.Error)
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
	if exitCode.Valid {
		e := int(exitCode.Int64)
		c.ExitCode = &e
	}
	return c, nil
}

func notFoundConnection(id int64) error {
	return socketd.Errorf(socketd.CodeNotFound, "connection %d not found", id)
}

func validState(s socketd.ConnectionState) bool {
	return slices.Contains(socketd.ConnectionStates, s)
}

func stateList() string {
	ss := make([]string, len(socketd.ConnectionStates))
	for i, s := range socketd.ConnectionStates {
		ss[i] = string(s)
	}
	return strings.Join(ss, ", ")
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
