// Package migrations holds socketd's SQLite schema as numbered golang-migrate
// files, embedded in the binary so that the daemon upgrades its own database
// at start-up.
//
// Files are named NNNNNN_verb_noun.up.sql and NNNNNN_verb_noun.down.sql.
// A released migration is never edited: a change to the schema is a new
// pair with the next number. package store applies them.
package migrations

import "embed"

// FS holds every migration file at its root, ready for golang-migrate's
// source/iofs driver with the path ".".
//
//go:embed *.sql
var FS embed.FS
