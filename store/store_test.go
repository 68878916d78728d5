package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/sqlite3"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/migrations"
)

// testCtx returns a context that ends with the test, bounded so that a bug
// fails the test instead of hanging it.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openTest opens a fresh database in the test's temporary directory and
// closes it when the test ends.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "socketd.db"))
}

// openPath opens the database at path and closes it when the test ends
// (Close is idempotent: a test may close it first).
func openPath(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// rawOpen opens path with plain settings, for a test to inspect or damage
// a database behind the store's back.
func rawOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

func wantCode(t *testing.T, err error, code socketd.Code) {
	t.Helper()
	if got := socketd.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func latestVersion(t *testing.T) int {
	t.Helper()
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	v, err := lastVersion(src)
	if err != nil {
		t.Fatal(err)
	}
	return int(v)
}

func schemaVersion(t *testing.T, q interface {
	QueryRow(string, ...any) *sql.Row
}) (int, bool) {
	t.Helper()
	var v int
	var dirty bool
	if err := q.QueryRow(`SELECT version, dirty FROM schema_migrations`).Scan(&v, &dirty); err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	return v, dirty
}

func TestOpenAppliesMigrationsAndReopens(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "socketd.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if v, dirty := schemaVersion(t, db.r); v != latestVersion(t) || dirty {
		t.Errorf("schema version %d dirty %v, want %d clean", v, dirty, latestVersion(t))
	}
	for _, table := range []string{"sockets", "connections", "connection_logs", "api_tokens"} {
		var n int
		if err := db.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: count %d, err %v", table, n, err)
		}
	}
	if _, err := db.CreateSocket(ctx, testSocket("kept")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if _, err := db.GetSocket(ctx, "kept"); err != nil {
		t.Errorf("socket after reopen: %v", err)
	}
	if v, dirty := schemaVersion(t, db.r); v != latestVersion(t) || dirty {
		t.Errorf("schema version after reopen %d dirty %v", v, dirty)
	}
}

func TestPragmas(t *testing.T) {
	db := openTest(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		pool *sql.DB
		name string
		want map[string]string
	}{
		{db.w, "write", map[string]string{
			"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "busy_timeout": "5000", "query_only": "0",
		}},
		{db.r, "read", map[string]string{
			"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "busy_timeout": "5000", "query_only": "1",
		}},
	} {
		for pragma, want := range tc.want {
			var got string
			if err := tc.pool.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("%s pool: PRAGMA %s: %v", tc.name, pragma, err)
			}
			if got != want {
				t.Errorf("%s pool: PRAGMA %s = %s, want %s", tc.name, pragma, got, want)
			}
		}
	}
	if _, err := db.r.ExecContext(ctx, `DELETE FROM sockets`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestOpenPathNeedsNoEscaping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "socketd.db")
	db, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	_, err := Open(testCtx(t), filepath.Join(t.TempDir(), "missing", "socketd.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "socketd.db")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
}

func TestOpenDirtyDatabase(t *testing.T) {
	path, err := reopenAfter(t, `UPDATE schema_migrations SET dirty = 1`)
	if err == nil {
		t.Fatal("Open of a dirty database succeeded")
	}
	t.Log(err)
	last := latestVersion(t)
	for _, want := range []string{
		path, "dirty at schema version " + itoa(last), "restore a backup",
		"UPDATE schema_migrations SET version = " + itoa(last-1) + ", dirty = 0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestOpenNewerDatabase(t *testing.T) {
	_, err := reopenAfter(t, `UPDATE schema_migrations SET version = 999`)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "newer than this socketd knows") ||
		!strings.Contains(err.Error(), "999") {
		t.Fatalf("Open of a newer database: %v", err)
	}
}

// withMigration returns the embedded migrations plus the files given.
func withMigration(t *testing.T, files map[string]string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(migrations.FS, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = &fstest.MapFile{Data: b}
	}
	for name, body := range files {
		m[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return m
}

// TestFailedMigrationThenRecovery follows a failed migration through the
// advice its error gives to a clean start.
func TestFailedMigrationThenRecovery(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "socketd.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	next := latestVersion(t) + 1
	name := func(dir string) string { return fmt.Sprintf("%06d_add_broken.%s.sql", next, dir) }
	broken := withMigration(t, map[string]string{
		// The first statement succeeds, the second fails: the transaction
		// must take the first back.
		name("up"):   "CREATE TABLE half (x INTEGER);\nCREATE TABLE sockets (x INTEGER);",
		name("down"): "DROP TABLE half;",
	})
	_, err = open(ctx, path, broken)
	if err == nil {
		t.Fatal("a failing migration did not fail Open")
	}
	t.Log(err)
	prev := itoa(next - 1)
	for _, want := range []string{
		"migration " + itoa(next) + ": table sockets already exists", "dirty at schema version " + itoa(next),
		"as version " + prev + " left it", "UPDATE schema_migrations SET version = " + prev + ", dirty = 0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "CREATE TABLE half") {
		t.Errorf("error %q repeats the migration's SQL", err)
	}

	raw := rawOpen(t, path)
	var n int
	if err := raw.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'half'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed migration's first statement was kept (count %d, err %v)", n, err)
	}
	// Do what the error says, with the migration fixed.
	if _, err := raw.Exec(`UPDATE schema_migrations SET version = ` + prev + `, dirty = 0`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	fixed := withMigration(t, map[string]string{
		name("up"):   "CREATE TABLE half (x INTEGER);",
		name("down"): "DROP TABLE half;",
	})
	db, err = open(ctx, path, fixed)
	if err != nil {
		t.Fatalf("Open after recovery: %v", err)
	}
	defer db.Close()
	if v, dirty := schemaVersion(t, db.r); v != next || dirty {
		t.Errorf("schema version %d dirty %v, want %d clean", v, dirty, next)
	}
}

func TestFailedFirstMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	_, err := open(testCtx(t), path, fstest.MapFS{
		"000001_create_broken.up.sql":   {Data: []byte("CREATE TABLE nope (;")},
		"000001_create_broken.down.sql": {Data: []byte("DROP TABLE nope;")},
	})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "DELETE FROM schema_migrations") {
		t.Fatalf("error %v does not say how to clear the mark", err)
	}
}

// TestMigrationsDownAndUp checks that every down migration undoes its up
// migration: all the way down leaves no table, and up again works.
func TestMigrationsDownAndUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socketd.db")
	raw, err := sql.Open("sqlite3", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	drv, err := sqlite3.WithInstance(raw, &sqlite3.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "sqlite3", drv)
	if err != nil {
		t.Fatal(err)
	}
	tables := func() []string {
		rows, err := raw.Query(`SELECT name FROM sqlite_schema WHERE type = 'table'
			AND name NOT IN ('schema_migrations', 'sqlite_sequence') ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		return names
	}
	for i, step := range []func() error{m.Up, m.Down, m.Up} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := tables()
		if i == 1 && len(got) != 0 {
			t.Errorf("tables left after migrating down: %v", got)
		}
		want := "api_tokens connection_block_ips connection_blocks connection_logs connections sockets"
		if i != 1 && strings.Join(got, " ") != want {
			t.Errorf("tables after migrating up: %v, want %s", got, want)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	db, err := Open(testCtx(t), filepath.Join(t.TempDir(), "socketd.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := db.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
	}
}

func TestTimeRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		if got := fromNanos(toNanos(tm)); !got.Equal(tm) || got.Location() != time.UTC {
			t.Errorf("round trip of %v gave %v", tm, got)
		}
	}
	local := time.Date(2024, 6, 1, 12, 0, 0, 5, time.FixedZone("X", 7200))
	if got := fromNanos(toNanos(local)); !got.Equal(local) || got.Location() != time.UTC {
		t.Errorf("round trip of %v gave %v", local, got)
	}
	if a, b := toNanos(time.Time{}), toNanos(time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)); a > b {
		t.Errorf("clamped times out of order: %d > %d", a, b)
	}
	if a, b := toNanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)), toNanos(time.Now()); a < b {
		t.Errorf("a far future time sorts before now: %d < %d", a, b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// reopenAfter creates a database, runs query on it behind the store's back,
// and returns its path and the error of opening it again.
func reopenAfter(t *testing.T, query string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socketd.db")
	db, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw := rawOpen(t, path)
	if _, err := raw.Exec(query); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	_, err = Open(testCtx(t), path)
	return path, err
}

// TestPageSize checks that a new database gets pageSize and stays in WAL
// mode, and that an existing database keeps the page size it has.
func TestPageSize(t *testing.T) {
	ctx := testCtx(t)
	check := func(path string, want int) {
		t.Helper()
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var size int
		var mode string
		if err := db.r.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if err := db.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if size != want || mode != "wal" {
			t.Errorf("%s: page size %d, journal mode %s; want %d, wal", filepath.Base(path), size, mode, want)
		}
	}
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	check(fresh, pageSize)
	check(fresh, pageSize) // reopened

	old := filepath.Join(dir, "old.db")
	raw := rawOpen(t, old)
	if _, err := raw.Exec(`PRAGMA page_size = 4096; CREATE TABLE before_socketd (x)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	check(old, 4096)
}
