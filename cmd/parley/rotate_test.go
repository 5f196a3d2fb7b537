package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// post sends a JSON body with key and decodes the JSON answer.
func post(t *testing.T, url, key string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

// providerOn creates, on the Parley at url, a project and an
// openai-compatible provider on up with apiKey, and returns the
// provider's id.
func providerOn(t *testing.T, url, admin string, up *llmtest.Server, apiKey string) string {
	t.Helper()
	_, prj := post(t, url+"/api/v1/projects", admin, map[string]any{"name": "p"})
	status, prov := post(t, url+"/api/v1/ai-providers", admin, map[string]any{
		"projectId": prj["id"], "name": "fake", "type": "openai-compatible", "baseUrl": up.URL(),
		"defaultModel": "m", "apiKey": apiKey,
	})
	if status != 201 {
		t.Fatalf("create provider = %d %v", status, prov)
	}
	return prov["id"].(string)
}

// TestRotateKey re-encrypts provider keys under a new master key: after
// rotate-key the server runs with the new key alone and still sends the
// provider's key upstream.
func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	up := llmtest.NewServer(t)
	admin := "pk_rotate_" + strings.Repeat("b", 30)
	oldKey, newKey := secret.GenerateKey(), secret.GenerateKey()
	common := []string{"PARLEY_BOOTSTRAP_ADMIN_KEY=" + admin, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true"}

	s := serve(t, dir, append(common, "PARLEY_SECRET_KEY="+oldKey)...)
	prov := providerOn(t, s.url, admin, up, "sk-rotate-test-1234567890")
	s.stop(t)

	// Without the old key in PARLEY_OLD_SECRET_KEYS, rotate-key cannot
	// open the provider's key, and says what to set rather than which
	// function failed.
	cmd := exec.Command(bin, "admin", "rotate-key")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(common, "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY="+newKey)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PARLEY_OLD_SECRET_KEYS") || !strings.Contains(string(out), prov) ||
		strings.Contains(string(out), "providers.") || strings.Contains(string(out), "internal") {
		t.Errorf("rotate-key without the old key = %v\n%s\nwant a failure naming the provider and PARLEY_OLD_SECRET_KEYS, without Go's ops", err, out)
	}

	cmd = exec.Command(bin, "admin", "rotate-key")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(common, "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY="+newKey, "PARLEY_OLD_SECRET_KEYS="+oldKey)...)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-encrypted 1 provider keys") {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}

	s = serve(t, dir, append(common, "PARLEY_SECRET_KEY="+newKey)...)
	status, res := post(t, s.url+"/api/v1/chats/completions", admin, map[string]any{
		"aiProviderId": prov, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
	})
	if status != 200 {
		t.Fatalf("completion after rotation = %d %v", status, res)
	}
	if got := up.Last().APIKey; got != "sk-rotate-test-1234567890" {
		t.Errorf("upstream key after rotation = %q", got)
	}
	s.stop(t)
}

// TestRotateKeyCarriesOn: rotate-key does not stop at a provider key it
// cannot open. It seals the others again (here binding a key sealed before
// keys were bound to their provider, under the master key it keeps), then
// lists each key it could not open by provider and master key id, saying
// why, never a secret, and exits non-zero. On SQLite and PostgreSQL.
func TestRotateKeyCarriesOn(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			dsn, env := "sqlite:"+filepath.Join(dir, "data", "parley.db"), []string{"PARLEY_DATABASE_URL="}
			if backend == "postgres" {
				dsn = dbtest.PostgresURL(t)
				env = []string{"PARLEY_DATABASE_URL=" + dsn}
			}
			rotateKeyCarriesOn(t, dir, dsn, env)
		})
	}
}

func rotateKeyCarriesOn(t *testing.T, dir, dsn string, env []string) {
	up := llmtest.NewServer(t)
	admin := "pk_carryon_" + strings.Repeat("d", 30)
	key, lostKey := secret.GenerateKey(), secret.GenerateKey()
	env = append(env, "PARLEY_BOOTSTRAP_ADMIN_KEY="+admin, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true", "PARLEY_SECRET_KEY="+key)
	apiKeys := map[string]string{}
	var lost, moved, legacy, good string // in the order rotate-key meets them (ids sort by creation)

	s := serve(t, dir, env...)
	_, prj := post(t, s.url+"/api/v1/projects", admin, map[string]any{"name": "p"})
	for _, id := range []*string{&lost, &moved, &legacy, &good} {
		apiKey := "sk-carry-on-" + strings.Repeat("x", len(apiKeys)+1) + "-1234567890"
		status, prov := post(t, s.url+"/api/v1/ai-providers", admin, map[string]any{
			"projectId": prj["id"], "name": "fake", "type": "openai-compatible", "baseUrl": up.URL(),
			"defaultModel": "m", "apiKey": apiKey,
		})
		if status != 201 {
			t.Fatalf("create provider = %d %v", status, prov)
		}
		*id = prov["id"].(string)
		apiKeys[*id] = apiKey
	}
	s.stop(t)

	// What one who can write the database, or an older Parley, left.
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealUnbound := func(masterKey, provider string) string {
		raw, _ := secret.ParseKey(masterKey)
		kr, err := secret.NewKeyring(raw)
		if err != nil {
			t.Fatal(err)
		}
		ct, id, err := kr.Seal([]byte(apiKeys[provider]), nil)
		if err != nil {
			t.Fatal(err)
		}
		setKey(t, st, provider, ct, id)
		return id
	}
	lostID := sealUnbound(lostKey, lost) // under a master key since lost
	keyID := sealUnbound(key, legacy)    // before keys were bound to their provider
	ct, id := storedKey(t, st, good)
	setKey(t, st, moved, ct, id) // copied from another provider's row

	out, code := parley(t, dir, env, "admin", "rotate-key")
	if code != 1 {
		t.Errorf("rotate-key with keys it cannot open: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"re-encrypted 1 provider keys; 1 of them were not bound to their provider and now are",
		"could not open 2 provider keys",
		"AI provider " + lost + " (master key " + lostID + ", which is not loaded)",
		"AI provider " + moved + " (master key " + keyID + ", which is loaded: altered, or copied from another provider's row)",
		"PARLEY_OLD_SECRET_KEYS", "apiKey",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate-key output does not say %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{legacy, good, key, lostKey, "sk-carry-on", "providers.", "internal"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("rotate-key output carries %q:\n%s", unwanted, out)
		}
	}
	if ct, id := storedKey(t, st, legacy); id == keyID || strings.Contains(string(ct), apiKeys[legacy]) {
		t.Errorf("rotate-key left the unbound key of %s as it was (key id %s)", legacy, id)
	}

	s = serve(t, dir, env...)
	for _, p := range []string{legacy, good} {
		status, res := post(t, s.url+"/api/v1/chats/completions", admin, map[string]any{
			"aiProviderId": p, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
		})
		if status != 200 || up.Last().APIKey != apiKeys[p] {
			t.Errorf("completion with %s after rotate-key = %d %v, or the upstream got another key", p, status, res)
		}
	}
	s.stop(t)
}

func storedKey(t *testing.T, st *store.Store, provider string) (ciphertext []byte, keyID string) {
	t.Helper()
	if err := st.DB().Raw("SELECT api_key_ciphertext, api_key_key_id FROM ai_providers WHERE id = ?", provider).
		Row().Scan(&ciphertext, &keyID); err != nil {
		t.Fatal(err)
	}
	return ciphertext, keyID
}

func setKey(t *testing.T, st *store.Store, provider string, ciphertext []byte, keyID string) {
	t.Helper()
	if err := st.DB().Exec("UPDATE ai_providers SET api_key_ciphertext = ?, api_key_key_id = ? WHERE id = ?",
		ciphertext, keyID, provider).Error; err != nil {
		t.Fatal(err)
	}
}

// TestRotateKeyNamesTheKeyFile: on SQLite, a server started without
// PARLEY_SECRET_KEY keeps its master key in data/master.key; rotate-key
// under a new PARLEY_SECRET_KEY left that file holding the old key, so the
// next plain start opened none of the providers' keys (a 503 at each
// completion). It now says so, and once the new key is written there a
// plain start sends the provider's key upstream.
func TestRotateKeyNamesTheKeyFile(t *testing.T) {
	dir := t.TempDir()
	up := llmtest.NewServer(t)
	admin := "pk_keyfile_" + strings.Repeat("e", 30)
	common := []string{"PARLEY_BOOTSTRAP_ADMIN_KEY=" + admin, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true", "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY="}

	s := serve(t, dir, common...)
	prov := providerOn(t, s.url, admin, up, "sk-keyfile-test-1234567890")
	s.stop(t)

	file := filepath.Join(dir, "data", "master.key")
	oldKey, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	newKey := secret.GenerateKey()
	cmd := exec.Command(bin, "admin", "rotate-key")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(common, "PARLEY_SECRET_KEY="+newKey, "PARLEY_OLD_SECRET_KEYS="+strings.TrimSpace(string(oldKey)))...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-encrypted 1 provider keys") || !strings.Contains(string(out), file+" still holds the old master key") {
		t.Fatalf("rotate-key: %v\n%s\nwant the rotation and a word on %s", err, out, file)
	}
	if strings.Contains(string(out), newKey) || strings.Contains(string(out), strings.TrimSpace(string(oldKey))) {
		t.Errorf("rotate-key printed a master key:\n%s", out)
	}
	if err := os.WriteFile(file, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = serve(t, dir, common...)
	defer s.stop(t)
	status, res := post(t, s.url+"/api/v1/chats/completions", admin, map[string]any{
		"aiProviderId": prov, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
	})
	if status != 200 || up.Last().APIKey != "sk-keyfile-test-1234567890" {
		t.Fatalf("a plain start with the new key in %s: %d %v", file, status, res)
	}
}
