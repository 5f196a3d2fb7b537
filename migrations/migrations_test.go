package migrations_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/parleyhq/parley/migrations"
)

// TestDialectsMatch checks that both dialects have the same migrations, so
// a schema version means the same change on either database.
func TestDialectsMatch(t *testing.T) {
	names := map[string][]string{}
	for _, d := range []string{migrations.Postgres, migrations.SQLite} {
		fsys, err := migrations.FS(d)
		if err != nil {
			t.Fatal(err)
		}
		if names[d], err = fs.Glob(fsys, "*.sql"); err != nil {
			t.Fatal(err)
		}
		if len(names[d]) == 0 {
			t.Fatalf("%s: no migrations", d)
		}
	}
	if pg, lite := names[migrations.Postgres], names[migrations.SQLite]; !slices.Equal(pg, lite) {
		t.Errorf("postgres has %q; sqlite has %q; want the same names", pg, lite)
	}
	if _, err := migrations.FS("mysql"); err == nil {
		t.Error(`FS("mysql"): want an error`)
	}
}
