package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/socketd/socketd"
)

// Retention bounds the history: rows that started more than MaxAge ago, and
// rows beyond the newest MaxRows ids, are deleted. Zero means no bound.
// Running rows are never deleted.
type Retention struct {
	MaxAge  time.Duration
	MaxRows int64
}

// pruneBatch is how many rows one transaction of PruneHistory deletes, and
// prunePause how long it lets the history writer have the database between
// two: a batch holds the one write connection for a few milliseconds, so
// that recording connections never waits long behind pruning.
const (
	pruneBatch = 500
	prunePause = 10 * time.Millisecond
)

// pruneSQL deletes the oldest pruneBatch finished rows with ids up to ?1
// that started before ?2. Rows go in id order, from the lowest: the walk
// starts where the rows are oldest and stops after the batch. Their logs go
// with them (ON DELETE CASCADE), their address entries by trigger.
var pruneSQL = `DELETE FROM connections WHERE id IN (
	SELECT id FROM connections WHERE id <= ?1 AND started_at < ?2 AND state <> '` + string(socketd.ConnRunning) + `'
	ORDER BY id LIMIT ?3)`

// PruneHistory deletes what r allows no more, in batches, until nothing is
// left to delete or ctx ends, and returns how many rows it deleted.
func (db *DB) PruneHistory(ctx context.Context, r Retention) (int64, error) {
	var total int64
	for {
		n, more, err := db.pruneOnce(ctx, r)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune the history: %w", err)
		}
		if !more {
			return total, db.dropEmptyBlocks(ctx)
		}
		select {
		case <-time.After(prunePause):
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
}

// pruneOnce deletes a batch of the rows beyond MaxRows, and one of those
// older than MaxAge, and reports whether there may be more.
func (db *DB) pruneOnce(ctx context.Context, r Retention) (n int64, more bool, err error) {
	const noTime = int64(1<<63 - 1)
	if r.MaxRows > 0 {
		// The newest MaxRows ids are kept: ids are never reused, and all
		// but a few are rows, so that is at most MaxRows rows, found
		// without counting them.
		var top sql.NullInt64
		if err := db.w.QueryRowContext(ctx, `SELECT max(id) FROM connections`).Scan(&top); err != nil {
			return 0, false, err
		}
		if top.Valid && top.Int64 > r.MaxRows {
			if n, err = db.pruneUpTo(ctx, top.Int64-r.MaxRows, noTime); err != nil {
				return n, false, err
			}
			more = n == pruneBatch
		}
	}
	if r.MaxAge > 0 {
		cutoff := toNanos(time.Now().Add(-r.MaxAge))
		// The blocks (migration 000005) bound the ids that can hold a row
		// started before the cutoff: no walk past them.
		var upTo sql.NullInt64
		if err := db.w.QueryRowContext(ctx, `SELECT max(max_id) FROM connection_blocks WHERE min_started < ?`, cutoff).Scan(&upTo); err != nil {
			return n, false, err
		}
		if upTo.Valid {
			aged, err := db.pruneUpTo(ctx, upTo.Int64, cutoff)
			n += aged
			more = more || aged == pruneBatch
			if err != nil {
				return n, false, err
			}
		}
	}
	return n, more, nil
}

func (db *DB) pruneUpTo(ctx context.Context, id, startedBefore int64) (int64, error) {
	res, err := db.w.ExecContext(ctx, pruneSQL, id, startedBefore, pruneBatch)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// dropEmptyBlocks deletes the sealed blocks below the oldest row left,
// whose rows are all gone.
func (db *DB) dropEmptyBlocks(ctx context.Context) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM connection_blocks
		WHERE sealed = 1 AND max_id < (SELECT min(id) FROM connections)`)
	if err != nil {
		return fmt.Errorf("prune the history: %w", err)
	}
	return nil
}
