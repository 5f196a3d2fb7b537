package main_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
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
	_, prj := post(t, s.url+"/api/v1/projects", admin, map[string]any{"name": "p"})
	status, prov := post(t, s.url+"/api/v1/ai-providers", admin, map[string]any{
		"projectId": prj["id"], "name": "fake", "type": "openai-compatible", "baseUrl": up.URL(),
		"defaultModel": "m", "apiKey": "sk-rotate-test-1234567890",
	})
	if status != 201 {
		t.Fatalf("create provider = %d %v", status, prov)
	}
	s.stop(t)

	// Without the old key in PARLEY_OLD_SECRET_KEYS, rotate-key cannot
	// open the provider's key, and says what to set rather than which
	// function failed.
	cmd := exec.Command(bin, "admin", "rotate-key")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(common, "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY="+newKey)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PARLEY_OLD_SECRET_KEYS") || !strings.Contains(string(out), prov["id"].(string)) ||
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
		"aiProviderId": prov["id"], "messages": []any{map[string]any{"role": "user", "content": "hi"}},
	})
	if status != 200 {
		t.Fatalf("completion after rotation = %d %v", status, res)
	}
	if got := up.Last().APIKey; got != "sk-rotate-test-1234567890" {
		t.Errorf("upstream key after rotation = %q", got)
	}
	s.stop(t)
}
