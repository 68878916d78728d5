package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/socketd/socketd"
)

// ListSockets returns every socket definition, ordered by name.
func (db *DB) ListSockets(ctx context.Context) ([]socketd.Socket, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT name, definition, created_at, updated_at FROM sockets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list sockets: %w", err)
	}
	defer rows.Close()
	ss := []socketd.Socket{}
	for rows.Next() {
		s, err := scanSocket(rows)
		if err != nil {
			return nil, fmt.Errorf("list sockets: %w", err)
		}
		ss = append(ss, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sockets: %w", err)
	}
	return ss, nil
}

// GetSocket returns the socket named name, or an error with code
// CodeNotFound.
func (db *DB) GetSocket(ctx context.Context, name string) (socketd.Socket, error) {
	return getSocket(ctx, db.r, name)
}

// CreateSocket stores a new socket and returns it as stored, with CreatedAt
// and UpdatedAt set to now. It returns an error with code CodeConflict if
// the name is taken. s.Status, s.CreatedAt and s.UpdatedAt are ignored.
func (db *DB) CreateSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, error) {
	if err := checkName(s.Name); err != nil {
		return socketd.Socket{}, err
	}
	now := nowUTC()
	s.CreatedAt, s.UpdatedAt, s.Status = now, now, nil
	def, err := encodeSocket(s)
	if err != nil {
		return socketd.Socket{}, err
	}
	res, err := db.w.ExecContext(ctx,
		`INSERT INTO sockets (name, definition, created_at, updated_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT (name) DO NOTHING`,
		s.Name, def, toNanos(now), toNanos(now))
	if err != nil {
		return socketd.Socket{}, fmt.Errorf("create socket %s: %w", s.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return socketd.Socket{}, fmt.Errorf("create socket %s: %w", s.Name, err)
	} else if n == 0 {
		return socketd.Socket{}, socketd.Errorf(socketd.CodeConflict, "socket %q already exists", s.Name)
	}
	return s, nil
}

// PutSocket creates the socket s.Name or replaces its definition, and
// returns it as stored and whether it was created. A replaced socket keeps
// its CreatedAt; UpdatedAt is set to now. s.Status, s.CreatedAt and
// s.UpdatedAt are ignored.
func (db *DB) PutSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, bool, error) {
	saved, created, err := db.PutSockets(ctx, []socketd.Socket{s}, nil)
	if err != nil {
		return socketd.Socket{}, false, err
	}
	return saved[0], created[0], nil
}

// PutSockets creates or replaces each of socks, as PutSocket does, in one
// transaction: all are saved, or none. It returns them as stored and, for
// each, whether it was created. check, if not nil, is called once inside
// the transaction before anything is written, with the stored definition
// of each of socks (nil where there is none): an error from it aborts the
// write and is returned as is, so that a caller can refuse to replace a
// definition other than the one it showed. check runs while the write lock
// is held: it must be quick and must not call the DB.
func (db *DB) PutSockets(ctx context.Context, socks []socketd.Socket, check func(stored []*socketd.Socket) error) ([]socketd.Socket, []bool, error) {
	what := "put sockets"
	if len(socks) == 1 {
		what = "put socket " + socks[0].Name
	}
	seen := make(map[string]bool, len(socks))
	for _, s := range socks {
		if err := checkName(s.Name); err != nil {
			return nil, nil, err
		}
		if seen[s.Name] {
			return nil, nil, socketd.Errorf(socketd.CodeInvalid, "socket %q is given twice", s.Name)
		}
		seen[s.Name] = true
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	stored := make([]*socketd.Socket, len(socks))
	for i, s := range socks {
		old, err := getSocket(ctx, tx, s.Name)
		switch {
		case socketd.ErrorCode(err) == socketd.CodeNotFound:
		case err != nil:
			return nil, nil, err
		default:
			stored[i] = &old
		}
	}
	if check != nil {
		if err := check(stored); err != nil {
			return nil, nil, err
		}
	}
	now := nowUTC()
	saved := make([]socketd.Socket, len(socks))
	created := make([]bool, len(socks))
	for i, s := range socks {
		s.CreatedAt, s.UpdatedAt, s.Status = now, now, nil
		isNew := stored[i] == nil
		if !isNew {
			s.CreatedAt = stored[i].CreatedAt
		}
		def, err := encodeSocket(s)
		if err != nil {
			return nil, nil, err
		}
		if isNew {
			_, err = tx.ExecContext(ctx,
				`INSERT INTO sockets (name, definition, created_at, updated_at) VALUES (?, ?, ?, ?)`,
				s.Name, def, toNanos(s.CreatedAt), toNanos(s.UpdatedAt))
		} else {
			_, err = tx.ExecContext(ctx,
				`UPDATE sockets SET definition = ?, updated_at = ? WHERE name = ?`,
				def, toNanos(s.UpdatedAt), s.Name)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("put socket %s: %w", s.Name, err)
		}
		saved[i], created[i] = s, isNew
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return saved, created, nil
}

// UpdateSocket reads the socket named name, lets fn change it and stores the
// result, all in one transaction, and returns it as stored. It returns an
// error with code CodeNotFound if there is no such socket. An error from fn
// aborts the update and is returned as is. fn may not rename the socket
// (CodeInvalid); changes it makes to CreatedAt, UpdatedAt and Status are
// ignored. fn runs while the write lock is held: it must be quick and must
// not call the DB.
func (db *DB) UpdateSocket(ctx context.Context, name string, fn func(*socketd.Socket) error) (socketd.Socket, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return socketd.Socket{}, fmt.Errorf("update socket %s: %w", name, err)
	}
	defer tx.Rollback()
	old, err := getSocket(ctx, tx, name)
	if err != nil {
		return socketd.Socket{}, err
	}
	s := old
	// Give fn its own copies, so that it cannot change old through them.
	s.Listen = slices.Clone(old.Listen)
	s.Command = slices.Clone(old.Command)
	s.Environment = maps.Clone(old.Environment)
	if err := fn(&s); err != nil {
		return socketd.Socket{}, err
	}
	if s.Name != name {
		return socketd.Socket{}, &socketd.Error{
			Code:    socketd.CodeInvalid,
			Message: "the socket definition is not valid",
			Fields:  []socketd.FieldError{{Pointer: "/name", Detail: "cannot be changed"}},
		}
	}
	s.CreatedAt, s.UpdatedAt, s.Status = old.CreatedAt, nowUTC(), nil
	def, err := encodeSocket(s)
	if err != nil {
		return socketd.Socket{}, err
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE sockets SET definition = ?, updated_at = ? WHERE name = ?`,
		def, toNanos(s.UpdatedAt), name); err != nil {
		return socketd.Socket{}, fmt.Errorf("update socket %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return socketd.Socket{}, fmt.Errorf("update socket %s: %w", name, err)
	}
	return s, nil
}

// DeleteSocket removes the socket named name, or returns an error with code
// CodeNotFound. Its connection history stays.
func (db *DB) DeleteSocket(ctx context.Context, name string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM sockets WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete socket %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete socket %s: %w", name, err)
	}
	if n == 0 {
		return notFoundSocket(name)
	}
	return nil
}

// queryer is what reads need of a *sql.DB or *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getSocket(ctx context.Context, q queryer, name string) (socketd.Socket, error) {
	row := q.QueryRowContext(ctx,
		`SELECT name, definition, created_at, updated_at FROM sockets WHERE name = ?`, name)
	s, err := scanSocket(row)
	if errors.Is(err, sql.ErrNoRows) {
		return socketd.Socket{}, notFoundSocket(name)
	}
	if err != nil {
		return socketd.Socket{}, fmt.Errorf("get socket %s: %w", name, err)
	}
	return s, nil
}

func notFoundSocket(name string) error {
	return socketd.Errorf(socketd.CodeNotFound, "socket %q not found", name)
}

// checkName refuses a name no socket can have, so that the table's keys
// stay clean whatever the caller validated.
func checkName(name string) error {
	if socketd.ValidName(name) {
		return nil
	}
	return &socketd.Error{
		Code:    socketd.CodeInvalid,
		Message: "the socket definition is not valid",
		Fields:  []socketd.FieldError{{Pointer: "/name", Detail: "must match " + socketd.NamePattern}},
	}
}

// encodeSocket returns the JSON stored as a socket's definition: every
// field but the timestamps, which have their own columns, and the status,
// which is never stored.
func encodeSocket(s socketd.Socket) (string, error) {
	s.CreatedAt, s.UpdatedAt, s.Status = time.Time{}, time.Time{}, nil
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode socket %s: %w", s.Name, err)
	}
	return string(b), nil
}

type scanner interface{ Scan(dest ...any) error }

// scanSocket reads a row of name, definition, created_at, updated_at. The
// definition is decoded over socketd.NewSocket, so that a field added to
// Socket later takes its default in rows stored before it existed.
func scanSocket(sc scanner) (socketd.Socket, error) {
	var (
		name, def        string
		created, updated int64
	)
	if err := sc.Scan(&name, &def, &created, &updated); err != nil {
		return socketd.Socket{}, err
	}
	s := socketd.NewSocket()
	if err := json.Unmarshal([]byte(def), &s); err != nil {
		return socketd.Socket{}, fmt.Errorf("decode socket %s: %w", name, err)
	}
	s.Name = name
	s.CreatedAt, s.UpdatedAt, s.Status = fromNanos(created), fromNanos(updated), nil
	return s, nil
}

// nowUTC returns the current time as the store keeps it: UTC, without a
// monotonic clock reading.
func nowUTC() time.Time { return time.Now().UTC().Round(0) }
