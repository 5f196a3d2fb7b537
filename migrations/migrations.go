// Package migrations holds Parley's goose SQL migrations, one folder per
// database dialect, embedded in the binary.
package migrations

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
)

// Dialects Parley has migrations for.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// FS returns the migrations of dialect ("postgres" or "sqlite") as a
// filesystem whose root holds the numbered .sql files goose reads.
func FS(dialect string) (fs.FS, error) {
	if dialect != Postgres && dialect != SQLite {
		return nil, fmt.Errorf("migrations: unknown dialect %q; want %q or %q", dialect, Postgres, SQLite)
	}
	return fs.Sub(files, dialect)
}

// Hash returns a hex SHA-256 over the names and contents of dialect's
// migrations, so that a test can cache a migrated template database per
// schema version.
func Hash(dialect string) (string, error) {
	fsys, err := FS(dialect)
	if err != nil {
		return "", err
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
