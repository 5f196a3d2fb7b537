package rest_test

import (
	"context"
	"testing"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// TestPatchKeepsRotatedKey: `parley admin rotate-key` re-encrypts a
// provider's key while a server that has the provider cached keeps
// running; a PATCH of another field on that server afterwards must not
// write the key sealed under the old master key back, or dropping the old
// key (as the README says to) leaves the provider's key unreadable.
func TestPatchKeepsRotatedKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		oldKey, newKey := secret.GenerateKey(), secret.GenerateKey()
		a := newHarness(t, st, func(c *app.Config) { c.SecretKey = oldKey })
		w := a.world()
		prov := "/api/v1/ai-providers/" + w.provider
		a.must(200, "GET", prov, a.admin, nil) // a caches it

		keyID := func() string {
			var id string
			if err := st.DB().Raw("SELECT api_key_key_id FROM ai_providers WHERE id = ?", w.provider).Row().Scan(&id); err != nil {
				t.Fatal(err)
			}
			return id
		}
		before := keyID()
		rot, err := app.New(context.Background(), app.Config{SecretKey: newKey, OldSecretKeys: []string{oldKey}}, st)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := rot.Services.Providers.RotateKeys(context.Background()); err != nil || r.Resealed != 1 {
			t.Fatalf("RotateKeys = %+v, %v", r, err)
		}
		rotated := keyID()
		if rotated == before {
			t.Fatal("the rotation did not change the key id")
		}
		a.must(200, "PATCH", prov, a.admin, map[string]any{"name": "renamed"})
		if got := keyID(); got != rotated {
			t.Errorf("after a PATCH of the name, the provider's key is sealed under key %s again (the old master key); want %s", got, rotated)
		}
	})
}
