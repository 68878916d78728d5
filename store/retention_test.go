package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// TestPruneHistoryUnderInserts: pruning by age deletes the finished rows
// that started too long ago, with their logs, in batches that let the
// connections recorded meanwhile through, and keeps running rows and new
// ones; pruning by count keeps the newest.
func TestPruneHistoryUnderInserts(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	old := time.Now().Add(-2 * time.Hour)
	const nOld = 3*blockRows + 100
	rows := make([]histRow, nOld)
	for i := range rows {
		rows[i] = histRow{id: int64(i + 1), socket: "a", state: socketd.ConnExited, ip: "192.0.2.1", started: old.Add(time.Duration(i) * time.Millisecond)}
	}
	rows[7].state = socketd.ConnRunning // a long-lived connection: kept
	insertRows(t, db, rows)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO connection_logs (connection_id, log) VALUES (5, x'6f6f7073')`); err != nil {
		t.Fatal(err)
	}

	// Connections are recorded all along, through the history writer.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var recorded atomic.Int64
	var slowest atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				c := &socketd.Connection{Socket: "b", State: socketd.ConnRunning, RemoteIP: "192.0.2.9"}
				if err := db.BeginConnection(ctx, c); err != nil {
					t.Error(err)
					return
				}
				end := time.Now()
				c.State, c.EndedAt = socketd.ConnExited, &end
				if err := db.FinishConnection(ctx, c); err != nil {
					t.Error(err)
					return
				}
				recorded.Add(1)
				for d := int64(time.Since(start)); d > slowest.Load(); {
					if slowest.CompareAndSwap(slowest.Load(), d) {
						break
					}
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	deleted, err := db.PruneHistory(ctx, Retention{MaxAge: time.Hour})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if deleted != nOld-1 {
		t.Errorf("deleted %d rows, want %d", deleted, nOld-1)
	}
	var left, oldLeft, logs, newRows int64
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM connections WHERE id <= ?`, nOld).Scan(&oldLeft)
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM connections`).Scan(&left)
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM connection_logs WHERE connection_id = 5`).Scan(&logs)
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM connections WHERE socket = 'b' AND state = 'exited'`).Scan(&newRows)
	if oldLeft != 1 || logs != 0 || newRows != recorded.Load() || left != recorded.Load()+1 {
		t.Errorf("left: %d old (want the running one), %d logs of them, %d new of %d recorded, %d in all",
			oldLeft, logs, newRows, recorded.Load(), left)
	}
	if c, err := db.GetConnection(ctx, 8); err != nil || c.State != socketd.ConnRunning {
		t.Errorf("the running row: %+v, %v", c, err)
	}
	// Recording went on meanwhile, never held long behind a batch.
	if recorded.Load() == 0 || time.Duration(slowest.Load()) > 500*time.Millisecond {
		t.Errorf("%d connections recorded during the pruning, the slowest in %v", recorded.Load(), time.Duration(slowest.Load()))
	}
	t.Logf("%d rows pruned while %d connections were recorded, the slowest in %v", deleted, recorded.Load(), time.Duration(slowest.Load()))
	checkBlocks(t, db)
	var blocks int64
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM connection_blocks WHERE max_id < 8`).Scan(&blocks)
	if blocks != 0 {
		t.Errorf("%d emptied blocks left below the oldest row", blocks)
	}
	// The time range lists still find what is left.
	if cs, _, err := db.ListConnections(ctx, socketd.ConnectionFilter{Since: old.Add(-time.Hour), Until: old.Add(time.Hour)}); err != nil || len(cs) != 1 || cs[0].ID != 8 {
		t.Errorf("the old rows by time: %v, %v", cs, err)
	}

	// By count: the newest ids are kept, and the running row.
	for range 30 {
		c := &socketd.Connection{Socket: "c", State: socketd.ConnExited}
		if err := db.BeginConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PruneHistory(ctx, Retention{MaxRows: 10}); err != nil {
		t.Fatal(err)
	}
	cs, _, err := db.ListConnections(ctx, socketd.ConnectionFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 11 || cs[0].Socket != "c" || cs[9].Socket != "c" || cs[10].ID != 8 {
		t.Errorf("after pruning to 10 rows: %d rows, %+v", len(cs), cs)
	}
	checkBlocks(t, db)
	if n, err := db.PruneHistory(ctx, Retention{}); n != 0 || err != nil {
		t.Errorf("pruning with no bound: %d, %v", n, err)
	}
}
