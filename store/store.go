// Package store keeps socketd's state in SQLite: the socket definitions, the
// history of every connection with its captured standard error, and the
// hashes of the API tokens.
//
// A DB holds two pools on one database file. The write pool has a single
// connection, so writes queue in Go (honouring contexts) instead of spinning
// in SQLite's busy handler; the read pool serves concurrent readers, which
// WAL lets run beside the writer. Connection history is written by one
// goroutine that commits whatever is queued in one transaction (group
// commit), so recording keeps up with thousands of connections a second;
// the rows it has yet to commit are kept safe from a crash by the begun
// file (begun.go).
package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/socketd/socketd"
)

// busyTimeout is how long a connection waits for another process's lock
// (or the WAL recovery of a reader) before SQLite reports SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// ErrClosed is returned by writes made after Close.
var ErrClosed = socketd.Errorf(socketd.CodeUnavailable, "the database is closed")

// DB is socketd's database. Its methods are safe for concurrent use.
type DB struct {
	path string
	// w has exactly one connection and takes every write.
	w *sql.DB
	// r takes reads; its connections are query-only.
	r    *sql.DB
	hist *writer

	// begun keeps the rows queued for hist safe from a crash (see
	// begun.go), and locks the database for this DB.
	begun *begunFile
	// idMu orders the handing out of connection ids (lastID, the last one
	// handed out) with the queueing of their rows.
	idMu   sync.Mutex
	lastID int64
	// recovered counts the rows Open added from the begun file.
	recovered int64

	closeOnce sync.Once
	closeErr  error
}

// dsn returns the data source name for the database file at path. It is the
// one place that sets socketd's SQLite pragmas.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	// WAL lets readers run while the writer commits, and makes a commit one
	// append to the log instead of a rewrite of the database.
	q.Set("_journal_mode", "WAL")
	// Wait for a lock held by another connection (a reader during WAL
	// recovery, a sqlite3 shell, a backup) instead of failing at once.
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	// SQLite leaves foreign keys off unless every connection asks; logs
	// rely on them to go with their connection.
	q.Set("_foreign_keys", "on")
	// In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash
	// of socketd loses nothing, a power cut may lose the last commits, and
	// the database is never corrupted. The history cannot afford an fsync
	// per batch at thousands of connections a second.
	q.Set("_synchronous", "NORMAL")
	if readOnly {
		// A reader's transaction only ever reads: a deferred BEGIN takes no
		// lock that could wait for the writer.
		q.Set("_txlock", "deferred")
		// Readers must never write; make a mistake fail loudly.
		q.Set("_query_only", "on")
	} else {
		// BEGIN IMMEDIATE takes the write lock when a transaction starts, so
		// a read-modify-write transaction never fails with SQLITE_BUSY when
		// it upgrades its read lock, which busy_timeout cannot retry.
		q.Set("_txlock", "immediate")
	}
	// A file: URI keeps a path holding '?' or '#' intact.
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Open opens (creating if needed) the database at path, brings its schema up
// to date with the embedded migrations and starts the history writer. The
// directory holding path must exist.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, nil)
}

// open is Open with the migrations in fsys (migrations.FS when nil).
func open(ctx context.Context, path string, fsys fs.FS) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// The begun file locks the database: resolve links, so that two paths
	// to one database lock one file.
	if real, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		abs = filepath.Join(real, filepath.Base(abs))
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	begun, lost, highest, err := openBegun(abs + ".begun")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	db, err := openSQL(ctx, abs, fsys, begun, lost, highest)
	if err != nil {
		begun.close()
		return nil, err
	}
	return db, nil
}

// openSQL is the rest of open, once the begun file is locked.
func openSQL(ctx context.Context, abs string, fsys fs.FS, begun *begunFile, lost []socketd.Connection, highest int64) (*DB, error) {
	w, err := sql.Open("sqlite3", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := setPageSize(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	if err := migrateUp(ctx, w, abs, fsys); err != nil {
		w.Close()
		return nil, err
	}
	recovered, err := recoverBegun(ctx, w, lost, highest)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: add the connections of %s, which an earlier process had not committed, to the history: %w",
			abs, begun.f.Name(), err)
	}
	if err := begun.reset(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// Ids continue after the highest ever handed out, even if the newest
	// rows have been deleted. The store hands them out itself (see
	// queueBegin), AUTOINCREMENT only keeps the high-water mark.
	var lastID int64
	if err := w.QueryRowContext(ctx, `SELECT max(
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'connections'), 0),
		coalesce((SELECT max(id) FROM connections), 0))`).Scan(&lastID); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite3", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	hist, err := newWriter(ctx, w, begun)
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	return &DB{path: abs, w: w, r: r, hist: hist, begun: begun, lastID: lastID, recovered: recovered}, nil
}

// Recovered returns how many connections Open added to the history from
// the begun file, as interrupted: an earlier process began them and stopped
// before it committed them.
func (db *DB) Recovered() int64 { return db.recovered }

// Close commits the history writes already queued, stops the writer and
// closes the database. Writes made after Close return ErrClosed. Close is
// idempotent: later calls return the first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.hist.close()
		// Keep the query planner's statistics fresh, as SQLite recommends
		// before closing a long-lived connection; it is cheap when there is
		// nothing to do. Failing to is no reason to fail Close.
		_, _ = db.w.Exec("PRAGMA optimize")
		rerr := db.r.Close()
		werr := db.w.Close()
		db.idMu.Lock() // no begin is between its id and its send
		db.begun.close()
		db.idMu.Unlock()
		switch {
		case werr != nil:
			db.closeErr = fmt.Errorf("close database %s: %w", db.path, werr)
		case rerr != nil:
			db.closeErr = fmt.Errorf("close database %s: %w", db.path, rerr)
		}
	})
	return db.closeErr
}

// pageSize is the page size of a new database. Every commit appends each
// page it changed to the WAL, and recording a connection changes a few
// rows of about a hundred bytes in as many pages: with SQLite's default of
// 4096 bytes most of what the history writer writes, checksums and later
// writes back is untouched bytes.
const pageSize = 1024

// setPageSize gives a new, empty database pageSize. The journal mode the
// connection opened with is already WAL, in which the page size cannot
// change, so it goes back to a rollback journal for the change (VACUUM
// applies it; an empty database has nothing to copy) and then to WAL again.
// An existing database keeps its page size.
func setPageSize(ctx context.Context, w *sql.DB) error {
	var tables int
	if err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
		return err
	}
	if tables > 0 {
		return nil
	}
	for _, q := range []string{
		`PRAGMA journal_mode = DELETE`,
		fmt.Sprintf(`PRAGMA page_size = %d`, pageSize),
		`VACUUM`,
		`PRAGMA journal_mode = WAL`,
	} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set page size: %s: %w", q, err)
		}
	}
	return nil
}

// toNanos returns t as UTC Unix nanoseconds, clamped to the range an int64
// holds (years 1678 to 2262) so that a far-off filter bound stays in order.
func toNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}

// fromNanos is the inverse of toNanos, in UTC.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)
