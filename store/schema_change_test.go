package store_test

import (
	"sync"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
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
