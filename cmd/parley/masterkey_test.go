package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
)

// TestForgottenSecretKey: a start without PARLEY_SECRET_KEY (an MCP
// client's configuration that leaves it out) against a database whose
// provider keys are sealed under another master key refuses, naming the
// key id and what to set, instead of creating a stray master.key that
// opens none of them and seals new ones. A start with the key, or with the
// key file restored, works; a start under another key warns.
func TestForgottenSecretKey(t *testing.T) {
	dir := t.TempDir()
	up := llmtest.NewServer(t)
	admin := "pk_forgot_" + strings.Repeat("c", 30)
	key := secret.GenerateKey()
	raw, err := secret.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	id := secret.KeyID(raw)
	common := []string{"PARLEY_BOOTSTRAP_ADMIN_KEY=" + admin, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true"}

	s := serve(t, dir, append(common, "PARLEY_SECRET_KEY="+key)...)
	_, prj := post(t, s.url+"/api/v1/projects", admin, map[string]any{"name": "p"})
	if status, prov := post(t, s.url+"/api/v1/ai-providers", admin, map[string]any{
		"projectId": prj["id"], "name": "fake", "type": "openai-compatible", "baseUrl": up.URL(),
		"defaultModel": "m", "apiKey": "sk-forgot-test-1234567890",
	}); status != 201 {
		t.Fatalf("create provider = %d %v", status, prov)
	}
	s.stop(t)

	keyFile := filepath.Join(dir, "data", "master.key")
	for _, args := range [][]string{{"admin", "create-user", "bob"}, {"mcp"}, {"serve"}} {
		out, code := parley(t, dir, common, args...)
		if code != 1 || !strings.Contains(out, "1 provider key") || !strings.Contains(out, id) ||
			!strings.Contains(out, "PARLEY_SECRET_KEY") || !strings.Contains(out, keyFile) {
			t.Errorf("parley %s without PARLEY_SECRET_KEY: exit %d, want 1 naming 1 provider key, key id %s, PARLEY_SECRET_KEY and %s:\n%s",
				args[0], code, id, keyFile, out)
		}
		if strings.Contains(out, key) {
			t.Errorf("parley %s printed the master key:\n%s", args[0], out)
		}
		if _, err := os.Stat(keyFile); err == nil {
			t.Fatalf("parley %s created %s", args[0], keyFile)
		}
	}

	// Under another key the server starts, and warns once, pointing at
	// the fix.
	s = serve(t, dir, append(common, "PARLEY_SECRET_KEY="+secret.GenerateKey())...)
	if out := s.stderr.String(); strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, id) ||
		!strings.Contains(out, "rotate-key") || !strings.Contains(out, "count=1") {
		t.Errorf("a start under another master key does not warn once naming key id %s, the count and rotate-key:\n%s", id, out)
	}
	s.stop(t)

	// Restoring the key file is the other fix.
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := parley(t, dir, common, "admin", "create-user", "bob"); code != 0 {
		t.Errorf("with master.key restored: exit %d\n%s", code, out)
	}
}

// TestOldSecretKeysTrailingComma: an empty entry in PARLEY_OLD_SECRET_KEYS
// (a trailing comma) is skipped, not refused as a key of 0 bytes.
func TestOldSecretKeysTrailingComma(t *testing.T) {
	dir := t.TempDir()
	key := secret.GenerateKey()
	env := []string{"PARLEY_SECRET_KEY=" + secret.GenerateKey(), "PARLEY_OLD_SECRET_KEYS=" + key + ",,"}
	if out, code := parley(t, dir, env, "admin", "rotate-key"); code != 0 || !strings.Contains(out, "re-encrypted 0 provider keys") {
		t.Errorf("rotate-key with a trailing comma in PARLEY_OLD_SECRET_KEYS: exit %d\n%s", code, out)
	}
}
