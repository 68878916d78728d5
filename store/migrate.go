package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/database/sqlite3"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/socketd/socketd/migrations"
)

// migrateUp applies the migrations in fsys (migrations.FS when nil) to db,
// the database file at path. Its errors say what the operator can do.
func migrateUp(ctx context.Context, db *sql.DB, path string, fsys fs.FS) error {
	if fsys == nil {
		fsys = migrations.FS
	}
	src, err := iofs.New(fsys, ".")
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	latest, err := lastVersion(src)
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	drv, err := sqlite3.WithInstance(db, &sqlite3.Config{})
	if err != nil {
		return fmt.Errorf("prepare migrations of %s: %w", path, err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "sqlite3", drv)
	if err != nil {
		return fmt.Errorf("prepare migrations of %s: %w", path, err)
	}
	// m.Close is never called: it would close db, which the store goes on
	// using. Nothing else of m needs closing (the source is an embed.FS).

	version, dirty, err := drv.Version()
	if err != nil {
		return fmt.Errorf("read schema version of %s: %w", path, err)
	}
	if dirty {
		return fmt.Errorf("database %s is dirty at schema version %d (migration %d did not finish): %s",
			path, version, version, dirtyAdvice(src, path, version))
	}
	if version > int(latest) {
		return fmt.Errorf("database %s is at schema version %d, newer than this socketd knows (%d): "+
			"run the socketd that upgraded it, or restore a backup taken before the upgrade",
			path, version, latest)
	}

	// Stop between migrations if ctx ends; each one is a transaction.
	stop := context.AfterFunc(ctx, func() { m.GracefulStop <- true })
	err = m.Up()
	stop()
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	if err == nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("migrate database %s: %w", path, err)
		}
		return nil
	}
	var dbErr *database.Error
	if errors.As(err, &dbErr) && dbErr.OrigErr != nil {
		// The default message repeats the whole migration's SQL.
		err = dbErr.OrigErr
	}
	version, dirty, verr := drv.Version()
	if verr == nil && dirty {
		return fmt.Errorf("migrate database %s: migration %d: %w; the database is marked dirty at schema version %d: %s",
			path, version, err, version, dirtyAdvice(src, path, version))
	}
	return fmt.Errorf("migrate database %s from schema version %d: %w", path, version, err)
}

// dirtyAdvice says how to recover from migration version having failed.
// golang-migrate marks the version dirty before it runs a migration, and the
// sqlite3 driver runs each migration in a transaction, so a failed one left
// the schema as the version before it.
func dirtyAdvice(src source.Driver, path string, version int) string {
	if version < 0 {
		return fmt.Sprintf("restore a backup, or check the schema and clear the mark with: "+
			"sqlite3 %q 'DELETE FROM schema_migrations', then start socketd again", path)
	}
	prev, err := src.Prev(uint(version))
	if err != nil {
		return fmt.Sprintf("the migration's transaction was rolled back, so the database should hold no schema yet; "+
			"restore a backup, or check it and clear the mark with: sqlite3 %q 'DELETE FROM schema_migrations', "+
			"then start socketd again to retry", path)
	}
	return fmt.Sprintf("the migration's transaction was rolled back, so the schema should be as version %d left it; "+
		"restore a backup, or check the schema and force that version with: "+
		"sqlite3 %q 'UPDATE schema_migrations SET version = %d, dirty = 0', then start socketd again to retry",
		prev, path, prev)
}

// lastVersion returns the highest migration version in src.
func lastVersion(src source.Driver) (uint, error) {
	v, err := src.First()
	if err != nil {
		return 0, fmt.Errorf("no migrations: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, fs.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, err
		}
		v = next
	}
}
