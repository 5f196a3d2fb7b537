package rest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// storedKey is what the database holds of a provider's sealed key.
type storedKey struct {
	ciphertext []byte
	keyID      string
}

func readStoredKey(t *testing.T, st *store.Store, providerID string) storedKey {
	t.Helper()
	var k storedKey
	if err := st.DB().Raw("SELECT api_key_ciphertext, api_key_key_id FROM ai_providers WHERE id = ?", providerID).
		Row().Scan(&k.ciphertext, &k.keyID); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeStoredKey overwrites a provider's sealed key in the database, as one
// who can write the database but holds no master key can.
func writeStoredKey(t *testing.T, st *store.Store, providerID string, k storedKey) {
	t.Helper()
	if err := st.DB().Exec("UPDATE ai_providers SET api_key_ciphertext = ?, api_key_key_id = ? WHERE id = ?",
		k.ciphertext, k.keyID, providerID).Error; err != nil {
		t.Fatal(err)
	}
}

// sealUnbound stores plaintext as provider's key the way Parley sealed keys
// before they were bound to their provider: with no associated data, under
// the bare master key id.
func sealUnbound(t *testing.T, st *store.Store, masterKey, providerID, plaintext string) {
	t.Helper()
	raw, err := secret.ParseKey(masterKey)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(raw)
	if err != nil {
		t.Fatal(err)
	}
	ct, id, err := kr.Seal([]byte(plaintext), nil)
	if err != nil {
		t.Fatal(err)
	}
	writeStoredKey(t, st, providerID, storedKey{ct, id})
}

// secondWorld is another project of the admin's, with its own provider and chat.
func (h *harness) secondWorld() world {
	h.t.Helper()
	p := h.project(h.admin, "q")
	prov := h.provider(h.admin, p)
	return world{project: p, provider: prov, chat: h.chat(h.admin, p, prov, nil)}
}

// reopen is a new harness over st, under the same master key and with
// nothing cached, whose upstream is h's: the one h's providers call.
func (h *harness) reopen(t *testing.T, st *store.Store, configure func(*app.Config)) *harness {
	t.Helper()
	again := newHarness(t, st, configure)
	again.up = h.up
	return again
}

func chatCompletion(h *harness, chat string) *response {
	h.t.Helper()
	return h.call("POST", "/api/v1/chats/"+chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
}

// wantMovedKeyRefused checks that a completion with w's provider, whose
// row holds a key sealed for another provider, answers 503 naming the
// provider and the owner's fix, and sends nothing upstream.
func wantMovedKeyRefused(t *testing.T, h *harness, w world, secrets ...string) {
	t.Helper()
	before := h.up.Count()
	r := chatCompletion(h, w.chat)
	if r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Fatalf("completion with a key copied from another provider = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	for _, want := range []string{w.provider, "another provider", "apiKey"} {
		if !strings.Contains(r.ErrorMessage(), want) {
			t.Errorf("message %q does not name %s", r.ErrorMessage(), want)
		}
	}
	for _, s := range secrets {
		if strings.Contains(string(r.Body), s) {
			t.Errorf("the answer carries a secret %q…: %s", s[:6], r.Body)
		}
	}
	if h.up.Count() != before {
		t.Error("a key copied from another provider reached the upstream")
	}
}

// TestProviderKeyBoundToProvider: a provider's key is sealed with the
// provider's id as associated data, so one who can write the database but
// does not hold the master key cannot copy provider A's sealed key into
// provider B's row and spend A's key through B's project.
func TestProviderKeyBoundToProvider(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		key := secret.GenerateKey()
		withKey := func(c *app.Config) { c.SecretKey = key }
		h := newHarness(t, st, withKey)
		a, b := h.world(), h.secondWorld()
		writeStoredKey(t, st, b.provider, readStoredKey(t, st, a.provider))

		h = h.reopen(t, st, withKey)
		wantMovedKeyRefused(t, h, b, upstreamKey)
		if r := chatCompletion(h, a.chat); r.Status != 200 {
			t.Errorf("completion with the key's own provider = %d %s", r.Status, r.Body)
		}
	})
}

// TestUnboundProviderKey: a key sealed before keys were bound to their
// provider (no associated data) still opens, and a start warns of it;
// rotate-key binds it even under the master key it was sealed with, after
// which it no longer opens in another provider's row.
func TestUnboundProviderKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		const legacyKey = "sk-legacy-unbound-0123456789"
		key := secret.GenerateKey()
		withKey := func(c *app.Config) { c.SecretKey = key }
		h := newHarness(t, st, withKey)
		a, b := h.world(), h.secondWorld()
		sealUnbound(t, st, key, a.provider, legacyKey)
		unbound := readStoredKey(t, st, a.provider)

		h = h.reopen(t, st, withKey)
		if logs := h.logs.String(); !strings.Contains(logs, "not bound to their provider") || !strings.Contains(logs, "rotate-key") ||
			!strings.Contains(logs, "count=1") {
			t.Errorf("a start with an unbound key does not warn, counting it and naming rotate-key:\n%s", logs)
		}
		if r := chatCompletion(h, a.chat); r.Status != 200 || h.up.Last().APIKey != legacyKey {
			t.Fatalf("completion with an unbound key = %d %s, or the upstream got another key", r.Status, r.Body)
		}

		// Under the same master key: only the unbound key is sealed again.
		rotated, err := h.app.Services.Providers.RotateKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rotated.Resealed != 1 || rotated.Bound != 1 || len(rotated.Unopened) != 0 {
			t.Errorf("RotateKeys = %+v, want 1 resealed, 1 bound, none unopened", rotated)
		}
		bound := readStoredKey(t, st, a.provider)
		if bound.keyID == unbound.keyID || string(bound.ciphertext) == string(unbound.ciphertext) {
			t.Errorf("rotate-key left the unbound key as it was (key id %s)", bound.keyID)
		}
		if again, err := h.app.Services.Providers.RotateKeys(context.Background()); err != nil || again.Resealed != 0 {
			t.Errorf("a second RotateKeys = %+v, %v; want nothing resealed", again, err)
		}

		h = h.reopen(t, st, withKey)
		if logs := h.logs.String(); strings.Contains(logs, "not bound") {
			t.Errorf("a start after rotate-key still warns of unbound keys:\n%s", logs)
		}
		if r := chatCompletion(h, a.chat); r.Status != 200 || h.up.Last().APIKey != legacyKey {
			t.Fatalf("completion with the key rotate-key bound = %d %s", r.Status, r.Body)
		}
		writeStoredKey(t, st, b.provider, bound)
		h = h.reopen(t, st, withKey)
		wantMovedKeyRefused(t, h, b, legacyKey, upstreamKey)
	})
}

// TestStartKnowsBoundKeysMasterKey: the checks at start read the master
// key's id out of a bound key's id. Under the key that sealed them, a start
// does not warn that provider keys are sealed under a key it does not
// hold; and on SQLite with that key only in PARLEY_OLD_SECRET_KEYS, it
// creates master.key rather than refusing to.
func TestStartKnowsBoundKeysMasterKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		key := secret.GenerateKey()
		h := newHarness(t, st, func(c *app.Config) { c.SecretKey = key })
		h.world()
		again := newHarness(t, st, func(c *app.Config) { c.SecretKey = key })
		if logs := again.logs.String(); strings.Contains(logs, "does not hold") {
			t.Errorf("a start under the master key that sealed the provider keys warns that it does not hold it:\n%s", logs)
		}
		if st.Dialect() == store.SQLite {
			newHarness(t, st, func(c *app.Config) { c.SecretKey, c.OldSecretKeys, c.DataDir = "", []string{key}, t.TempDir() })
		}
	})
}

// TestWarnsOfAReadableSQLiteFile: a SQLite database other users of the
// machine can read (one an older Parley made 0644, or a restore) is a
// warning at start, naming the file and what to do; Parley's own 0600 is
// none.
func TestWarnsOfAReadableSQLiteFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o644} {
		st := dbtest.SQLite(t)
		if err := os.Chmod(st.SQLitePath(), mode); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, st, nil)
		warned := strings.Contains(h.logs.String(), "can be read by other users") && strings.Contains(h.logs.String(), "chmod 600")
		if warned != (mode != 0o600) {
			t.Errorf("a database of mode %v: warned %v; logs:\n%s", mode, warned, h.logs.String())
		}
	}
}

// TestWarnsOfAReadableMasterKey: so is a master key file other users can
// read, which opens every stored provider key.
func TestWarnsOfAReadableMasterKey(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o644} {
		dir := t.TempDir()
		path := filepath.Join(dir, "master.key")
		if _, err := secret.LoadOrCreateFile(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.SecretKey, c.DataDir = "", dir })
		warned := strings.Contains(h.logs.String(), "the master key file can be read by other users") && strings.Contains(h.logs.String(), "chmod 600")
		if warned != (mode != 0o600) {
			t.Errorf("a master key file of mode %v: warned %v; logs:\n%s", mode, warned, h.logs.String())
		}
	}
}
