// Package dbtest gives each test a fresh, migrated database: SQLite in the
// test's temporary directory, or PostgreSQL from the server named by
// PARLEY_TEST_DATABASE_URL.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/parleyhq/parley/internal/tcpproxy"
	"github.com/parleyhq/parley/migrations"
	"github.com/parleyhq/parley/store"
)

// EnvURL names the variable holding a PostgreSQL URL with the right to
// create databases (scripts/with-postgres.sh sets it).
const EnvURL = "PARLEY_TEST_DATABASE_URL"

// SQLite returns a store over a new, migrated SQLite file in t.TempDir(),
// closed when the test ends: a copy of one migrated per test process, as
// Postgres copies a template. Migrating takes most of a second under
// -race, copying a millisecond, and the API's and MCP's tests open a few
// hundred databases each.
func SQLite(t testing.TB) *store.Store {
	t.Helper()
	img, err := sqliteTemplate()
	if err != nil {
		t.Fatalf("dbtest: migrate the SQLite template: %v", err)
	}
	path := filepath.Join(t.TempDir(), "parley.db")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatalf("dbtest: open SQLite: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var (
	sqliteOnce sync.Once
	sqliteImg  []byte
	sqliteErr  error
)

// sqliteTemplate migrates one SQLite database for the process and returns
// its file, whole once the store is closed (its WAL checkpointed).
func sqliteTemplate() ([]byte, error) {
	sqliteOnce.Do(func() {
		sqliteImg, sqliteErr = migratedSQLite()
	})
	return sqliteImg, sqliteErr
}

func migratedSQLite() ([]byte, error) {
	dir, err := os.MkdirTemp("", "parley-dbtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "parley.db")
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite:"+path)
	if err != nil {
		return nil, err
	}
	err = s.Migrate(ctx, "up", nil)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, fmt.Errorf("the template's WAL was not checkpointed when it closed")
	}
	return os.ReadFile(path)
}

// Postgres returns a store over a new PostgreSQL database, copied from a
// migrated template and dropped when the test ends. Without
// PARLEY_TEST_DATABASE_URL it skips the test, saying so loudly; when CI is
// "true" or PARLEY_REQUIRE_POSTGRES is "1" it fails it instead.
func Postgres(t testing.TB) *store.Store {
	t.Helper()
	dsn := PostgresURL(t)
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("dbtest: open %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = s.Close() }) // runs before the drop registered by PostgresURL
	return s
}

// PostgresThroughProxy is Postgres reached through a TCP proxy, for tests
// that take the database away (Down) or make it hang (Stall).
func PostgresThroughProxy(t testing.TB) (*store.Store, *tcpproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := tcpproxy.Start(t, u.Host)
	u.Host = p.Addr()
	s, err := store.Open(context.Background(), u.String())
	if err != nil {
		t.Fatalf("dbtest: open through a proxy: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, p
}

// PostgresRequired says whether a test that needs PostgreSQL must fail,
// rather than skip, when none is configured: in CI (CI=true) and when
// PARLEY_REQUIRE_POSTGRES is "1".
func PostgresRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PARLEY_REQUIRE_POSTGRES") == "1"
}

// PostgresURL returns the URL of a new, migrated PostgreSQL database that is
// dropped when the test ends, for tests that start the binary. It skips or
// fails like Postgres when no server is configured.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return postgresURL(t, true)
}

// EmptyPostgresURL is PostgresURL for a database without any table, as
// createdb leaves one.
func EmptyPostgresURL(t testing.TB) string {
	t.Helper()
	return postgresURL(t, false)
}

func postgresURL(t testing.TB, migrated bool) string {
	t.Helper()
	adminURL := os.Getenv(EnvURL)
	if adminURL == "" {
		const how = "run the tests through scripts/with-postgres.sh (make test does) or point " + EnvURL + " at a server"
		if PostgresRequired() {
			t.Fatal("PostgreSQL suite required (CI=true or PARLEY_REQUIRE_POSTGRES=1) but " + EnvURL + " is not set; " + how)
		}
		const msg = "PostgreSQL suite SKIPPED: " + EnvURL + " is not set; " + how
		warnOnce.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", msg) })
		t.Skip(msg)
	}
	ctx := context.Background()
	admin, tmpl, err := setup(ctx, adminURL)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	name := "parley_t_" + randomHex(8)
	create := "CREATE DATABASE " + quote(name)
	if migrated {
		create += " TEMPLATE " + quote(tmpl)
	}
	if _, err := admin.ExecContext(ctx, create); err != nil {
		t.Fatalf("dbtest: %s: %v", create, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	return dsn
}

// Each runs body as the subtests "sqlite" and "postgres", each with a
// fresh store. The two run in parallel, once the calling test's function
// has returned (so nothing may follow Each there): each has its own
// database and its own servers, and a suite run one half after the other
// left a core idle while either waited on a timer, a socket or the
// other database.
func Each(t *testing.T, body func(t *testing.T, s *store.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		body(t, SQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		body(t, Postgres(t))
	})
}

var (
	warnOnce sync.Once

	setupMu    sync.Mutex
	setupAdmin *sql.DB
	setupTmpl  string
)

// templateLock is the pg_advisory_lock key that serialises building
// templates across test processes ("parley" in ASCII).
const templateLock = 0x7061726c6579

// setup connects to the admin database once per process and makes sure a
// template database migrated to the current schema exists, returning its
// name. Templates are named by a hash of the migrations, so a changed
// schema gets a new one; building one happens under an advisory lock, into
// a scratch database renamed only once migrated.
func setup(ctx context.Context, adminURL string) (*sql.DB, string, error) {
	setupMu.Lock()
	defer setupMu.Unlock()
	if setupAdmin != nil {
		return setupAdmin, setupTmpl, nil
	}
	hash, err := migrations.Hash(migrations.Postgres)
	if err != nil {
		return nil, "", err
	}
	tmpl := "parley_template_" + hash[:16]
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, "", fmt.Errorf("connect to %s: %w", EnvURL, err)
	}
	fail := func(err error) (*sql.DB, string, error) {
		_ = admin.Close()
		return nil, "", err
	}
	conn, err := admin.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("connect to %s: %w", EnvURL, err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		return fail(fmt.Errorf("lock template: %w", err))
	}
	defer func() {
		// Closing the session would release it too; conn goes back to the pool.
		_, _ = conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", templateLock)
	}()
	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tmpl).Scan(&exists); err != nil {
		return fail(fmt.Errorf("look for template %s: %w", tmpl, err))
	}
	if !exists {
		if err := buildTemplate(ctx, conn, adminURL, tmpl); err != nil {
			return fail(err)
		}
	}
	setupAdmin, setupTmpl = admin, tmpl
	return admin, tmpl, nil
}

func buildTemplate(ctx context.Context, conn *sql.Conn, adminURL, tmpl string) error {
	scratch := tmpl + "_build"
	if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quote(scratch)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop %s: %w", scratch, err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+quote(scratch)); err != nil {
		return fmt.Errorf("create %s: %w", scratch, err)
	}
	dsn, err := withDatabase(adminURL, scratch)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", scratch, err)
	}
	err = s.Migrate(ctx, "up", nil)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", scratch, err)
	}
	if _, err := conn.ExecContext(ctx, "ALTER DATABASE "+quote(scratch)+" RENAME TO "+quote(tmpl)); err != nil {
		return fmt.Errorf("rename %s to %s: %w", scratch, tmpl, err)
	}
	return nil
}

// withDatabase returns the PostgreSQL URL u pointing at database name.
func withDatabase(u, name string) (string, error) {
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "postgres" && parsed.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL", EnvURL)
	}
	parsed.Path = "/" + name
	parsed.RawPath = ""
	return parsed.String(), nil
}

// quote quotes a PostgreSQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
