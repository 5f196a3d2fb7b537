package store_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/store"
)

// TestReadsSurviveAnAddedColumn: a migration that adds a column, run by a
// newer instance while this one serves, must not fail this one's reads,
// nor an update that returns the row. On
// PostgreSQL the driver caches each connection's prepared statements; a
// `SELECT *` cached before the column came then fails once per connection
// ("cached plan must not change result type"), a 500 for the request that
// draws it. Naming the columns read keeps the cached plans valid.
func TestReadsSurviveAnAddedColumn(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		reads := func() []error {
			var (
				mu   sync.Mutex
				errs []error
				wg   sync.WaitGroup
			)
			for range 8 { // several at once, to prepare them on several connections
				wg.Go(func() {
					_, _, err1 := s.GetAPIKeyByHash(ctx(), domain.HashAPIKey("pk_bob_secret"))
					_, err2 := s.GetChat(ctx(), w.chatA.ID)
					_, err3 := s.GetProvider(ctx(), w.provA.ID)
					_, err4 := s.RevokeAPIKey(ctx(), w.alice.ID, w.aliceKey.ID, t0) // UPDATE ... RETURNING
					mu.Lock()
					defer mu.Unlock()
					for _, err := range []error{err1, err2, err3, err4} {
						if err != nil {
							errs = append(errs, err)
						}
					}
				})
			}
			wg.Wait()
			return errs
		}
		if errs := reads(); len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, table := range []string{"api_keys", "users", "chats", "ai_providers"} {
			must(t, s.DB().Exec("ALTER TABLE "+table+" ADD COLUMN added_later integer").Error)
		}
		for range 3 {
			if errs := reads(); len(errs) > 0 {
				t.Fatalf("reads after a column was added: %v", errs)
			}
		}
	})
}

// longTransaction begins a transaction on a connection of its own of s's
// database, in isolation level iso ("" for the default), reads table in
// it, which it holds until the returned commit, and returns the pool.
func longTransaction(t *testing.T, s *store.Store, iso, table string) (db *sql.DB, commit func()) {
	t.Helper()
	db, err := s.DB().DB()
	must(t, err)
	conn, err := db.Conn(ctx())
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = conn.ExecContext(ctx(), strings.TrimSpace("BEGIN "+iso))
	must(t, err)
	var n int
	must(t, conn.QueryRowContext(ctx(), "SELECT count(*) FROM "+table).Scan(&n))
	return db, func() {
		_, err := conn.ExecContext(ctx(), "COMMIT")
		must(t, err)
	}
}

// migrateUp runs migrate up on s in the background, reporting to out, and
// returns the wait for its end, at most 30s, that fails t if it failed.
func migrateUp(t *testing.T, s *store.Store, out *logtest.Buffer) (wait func()) {
	migrated := make(chan error, 1)
	go func() { migrated <- s.Migrate(context.Background(), "up", out) }()
	return func() {
		t.Helper()
		select {
		case err := <-migrated:
			must(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("the migration did not complete within 30s of the transaction's end")
		}
	}
}

// TestMigrationDoesNotStallTheTable: on PostgreSQL, a migration's ALTER
// TABLE waiting for a table that a long transaction read (pg_dump, a long
// report) held every later query of that table behind it for as long, so
// that the instances of the version before, still serving in a rolling
// upgrade, stalled and failed to store turns. It waits at most its
// lock_timeout at a time, rolls back and tries again, saying so, and
// completes once the transaction ends; those applied before it are said
// to be.
func TestMigrationDoesNotStallTheTable(t *testing.T) {
	s := dbtest.Postgres(t)
	defer store.SetMigrationLockTimeout(200 * time.Millisecond)()
	for range 5 { // 00017 to 00013; 00014 is an ALTER TABLE of ai_providers
		must(t, s.Migrate(ctx(), "down", nil))
	}
	db, commit := longTransaction(t, s, "", "ai_providers")
	var out logtest.Buffer
	wait := migrateUp(t, s, &out)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		qctx, cancel := context.WithTimeout(ctx(), 5*time.Second)
		var n int
		err := db.QueryRowContext(qctx, "SELECT count(*) FROM ai_providers").Scan(&n)
		cancel()
		if err != nil {
			t.Fatalf("a query of the table while the migration waits: %v; want it answered, not held behind the migration", err)
		}
	}
	if !strings.Contains(out.String(), "waiting: a migration gave up waiting for a lock another transaction holds") {
		t.Errorf("migrate up said %q; want that it is waiting for a lock", out.String())
	}
	commit()
	wait()
	if got := out.String(); strings.Count(got, "applied 00013_usage_details.sql") != 1 || !strings.Contains(got, "applied 00017_document_content_last.sql") {
		t.Errorf("migrate up said %q; want 00013 to 00017 applied, each said once", got)
	}
}

// TestConcurrentIndexWaitsBehindASnapshot: a CONCURRENTLY index build
// blocks no query, but waits for every transaction older than it, in any
// table (a pg_dump's snapshot): it waits, rather than give up at the
// migrations' lock_timeout and scan the table again and again.
func TestConcurrentIndexWaitsBehindASnapshot(t *testing.T) {
	s := dbtest.Postgres(t)
	defer store.SetMigrationLockTimeout(200 * time.Millisecond)()
	for range 6 { // 00017 to 00012, a CONCURRENTLY build of conversations' index
		must(t, s.Migrate(ctx(), "down", nil))
	}
	_, commit := longTransaction(t, s, "ISOLATION LEVEL REPEATABLE READ", "users") // a snapshot, as pg_dump's
	var out logtest.Buffer
	wait := migrateUp(t, s, &out)
	time.Sleep(1500 * time.Millisecond) // seven lock timeouts
	if strings.Contains(out.String(), "waiting:") {
		t.Errorf("migrate up said %q; want the index build to wait, not give up and build again", out.String())
	}
	commit()
	wait()
	if got := out.String(); !strings.Contains(got, "applied 00012_conversation_project_index.sql") || !strings.Contains(got, "applied 00017_document_content_last.sql") {
		t.Errorf("migrate up said %q; want 00012 to 00017 applied", got)
	}
}
