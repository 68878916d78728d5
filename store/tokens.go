package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"

	"github.com/socketd/socketd"
)

// HasTokens reports whether any API token exists.
func (db *DB) HasTokens(ctx context.Context) (bool, error) {
	var one int
	err := db.r.QueryRowContext(ctx, `SELECT 1 FROM api_tokens LIMIT 1`).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for tokens: %w", err)
	}
	return true, nil
}

// AddToken stores the SHA-256 hash of token under name; the token itself is
// never stored. A token is meant to be random and long, which is what makes
// a fast hash enough. An empty name or token returns an error with code
// CodeInvalid, a token already stored one with code CodeConflict.
func (db *DB) AddToken(ctx context.Context, name, token string) error {
	if err := checkToken(name, token); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	res, err := db.w.ExecContext(ctx,
		`INSERT INTO api_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING`,
		name, sum[:], toNanos(nowUTC()))
	if err != nil {
		return fmt.Errorf("add token %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("add token %s: %w", name, err)
	}
	if n == 0 {
		return socketd.Errorf(socketd.CodeConflict, "this token is already stored")
	}
	return nil
}

// CheckToken reports whether token is one of the stored tokens. The lookup
// is by the token's SHA-256, so its timing tells a guesser nothing about
// any stored token.
func (db *DB) CheckToken(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	sum := sha256.Sum256([]byte(token))
	var one int
	err := db.r.QueryRowContext(ctx, `SELECT 1 FROM api_tokens WHERE hash = ?`, sum[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check token: %w", err)
	}
	return true, nil
}

// SetToken makes token the only token stored under name, replacing any
// earlier one in the same transaction: the old token stops working the
// moment the new one does.
func (db *DB) SetToken(ctx context.Context, name, token string) error {
	if err := checkToken(name, token); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set token %s: %w", name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE name = ? OR hash = ?`, name, sum[:]); err != nil {
		return fmt.Errorf("set token %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, hash, created_at) VALUES (?, ?, ?)`,
		name, sum[:], toNanos(nowUTC())); err != nil {
		return fmt.Errorf("set token %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set token %s: %w", name, err)
	}
	return nil
}

// checkToken refuses an empty name or token with code CodeInvalid.
func checkToken(name, token string) error {
	if name == "" {
		return socketd.Errorf(socketd.CodeInvalid, "a token needs a name")
	}
	if token == "" {
		return socketd.Errorf(socketd.CodeInvalid, "a token cannot be empty")
	}
	return nil
}
