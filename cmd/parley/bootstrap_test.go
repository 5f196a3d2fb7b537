package main_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestConcurrentFirstStarts: processes that start together on an empty
// database (replicas, or `parley serve` and an MCP client's `parley mcp`)
// create one first admin and print its key once between them; with
// PARLEY_BOOTSTRAP_ADMIN_KEY they all start, and that key has one user.
// On SQLite and PostgreSQL, each round on a fresh, migrated database.
func TestConcurrentFirstStarts(t *testing.T) {
	const starts, rounds = 4, 3
	bootstrapKey := "pk_together_" + strings.Repeat("t", 30)
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, withKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bootstrap key %t", backend, withKey), func(t *testing.T) {
				for round := range rounds {
					dir := t.TempDir()
					dsn, env := "sqlite:"+filepath.Join(dir, "data", "parley.db"), []string{"PARLEY_DATABASE_URL="}
					if backend == "postgres" {
						dsn = dbtest.PostgresURL(t)
						env = []string{"PARLEY_DATABASE_URL=" + dsn}
					}
					if out, code := parley(t, dir, env, "migrate", "up"); code != 0 {
						t.Fatalf("migrate up: exit %d\n%s", code, out)
					}
					env = append(env, "PARLEY_SECRET_KEY="+bootstrapSecret)
					if withKey {
						env = append(env, "PARLEY_BOOTSTRAP_ADMIN_KEY="+bootstrapKey)
					}
					outs := make([]string, starts)
					var wg sync.WaitGroup
					for i := range starts {
						wg.Go(func() {
							out, code := parley(t, dir, env, "admin", "create-user", fmt.Sprint("user", i))
							if code != 0 {
								t.Errorf("round %d: start %d exited %d:\n%s", round, i, code, out)
							}
							outs[i] = out
						})
					}
					wg.Wait()
					printed := printedKey.FindAllString(strings.Join(outs, ""), -1)
					if want := map[bool]int{false: 1, true: 0}[withKey]; len(printed) != want {
						t.Errorf("round %d: %d starts printed %d first admin keys, want %d:\n%s", round, starts, len(printed), want, strings.Join(outs, "\n"))
					}
					st, err := store.Open(context.Background(), dsn)
					if err != nil {
						t.Fatal(err)
					}
					var admins int64
					err = st.DB().Raw("SELECT count(*) FROM users WHERE name = 'admin'").Row().Scan(&admins)
					st.Close()
					if err != nil {
						t.Fatal(err)
					}
					if admins != 1 {
						t.Errorf("round %d: %d users named admin after %d starts, want 1", round, admins, starts)
					}
				}
			})
		}
	}
}

// bootstrapSecret is a master key, so that PostgreSQL starts.
const bootstrapSecret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
