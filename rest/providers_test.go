package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

func TestProviderKeyIsWriteOnly(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for _, r := range []*response{
			h.call("GET", "/api/v1/ai-providers/"+w.provider, h.admin, nil),
			h.call("GET", "/api/v1/ai-providers?projectId="+w.project, h.admin, nil),
			h.call("PATCH", "/api/v1/ai-providers/"+w.provider, h.admin, map[string]any{"name": "renamed"}),
		} {
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), upstreamKey) || strings.Contains(string(r.Body), `"apiKey"`) {
				t.Errorf("a provider response carries the key: %s", r.Body)
			}
		}
		got := h.must(200, "GET", "/api/v1/ai-providers/"+w.provider, h.admin, nil)
		if got["hasApiKey"] != true || got["apiKeyHint"] != "sk-…6789" {
			t.Errorf("hasApiKey/apiKeyHint = %v/%v", got["hasApiKey"], got["apiKeyHint"])
		}
		// The key is encrypted at rest.
		var stored []byte
		if err := h.app.Store.DB().Raw("SELECT api_key_ciphertext FROM ai_providers WHERE id = ?", w.provider).Row().Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) == 0 || strings.Contains(string(stored), upstreamKey) {
			t.Errorf("stored key is not encrypted: %q", stored)
		}
	})
}

func TestProviderValidation(t *testing.T) {
	t.Setenv("PARLEY_PROVIDER_KEY_TEST", "sk-test-from-env-1234567890")
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		base := func(extra map[string]any) map[string]any {
			b := map[string]any{"projectId": p, "name": "n", "type": "openai-compatible", "baseUrl": h.up.URL(), "defaultModel": "m"}
			for k, v := range extra {
				b[k] = v
			}
			return b
		}
		tests := []struct {
			name  string
			body  map[string]any
			field string
		}{
			{"bad type", base(map[string]any{"type": "cohere"}), "type"},
			{"no default model", base(map[string]any{"defaultModel": ""}), "defaultModel"},
			{"compatible without baseUrl", base(map[string]any{"baseUrl": ""}), "baseUrl"},
			{"ftp baseUrl", base(map[string]any{"baseUrl": "ftp://example.com"}), "baseUrl"},
			{"baseUrl of 7 MB", base(map[string]any{"baseUrl": h.up.URL() + "/" + strings.Repeat("k", 7<<20)}), "baseUrl"},
			{"env ref outside the prefix", base(map[string]any{"apiKeyRef": "env:PARLEY_DATABASE_URL"}), "apiKeyRef"},
			{"ref not env", base(map[string]any{"apiKeyRef": "vault:x"}), "apiKeyRef"},
			{"key and ref", base(map[string]any{"apiKey": "sk-1", "apiKeyRef": "env:PARLEY_PROVIDER_KEY_X"}), "apiKey"},
			{"openai without a key", base(map[string]any{"type": "openai", "baseUrl": ""}), "apiKey"},
			{"anthropic without a key", base(map[string]any{"type": "anthropic"}), "apiKey"},
			{"apiVersion off Azure", base(map[string]any{"apiVersion": "2024-10-21"}), "apiVersion"},
			{"apiVersion on Azure's v1 API", base(map[string]any{"type": "azure-openai", "apiKey": "k", "baseUrl": h.up.RootURL() + "/openai/v1/",
				"apiVersion": "2024-10-21"}), "apiVersion"},
			{"NUL in env ref", base(map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_A\x00B"}), "apiKeyRef"},
			{"newline in env ref", base(map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_A\n"}), "apiKeyRef"},
			// A 400 now rather than a 503 at every completion.
			{"env ref to a variable not set", base(map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_NEVER_SET"}), "apiKeyRef"},
			{"NUL in apiVersion", base(map[string]any{"type": "azure-openai", "apiKey": "k", "apiVersion": "v\x00"}), "apiVersion"},
			// It goes into every call's query: saved, Azure would refuse each.
			{"apiVersion with a query", base(map[string]any{"type": "azure-openai", "apiKey": "k", "apiVersion": "2024-10-21&x=1"}), "apiVersion"},
			{"apiVersion with a space", base(map[string]any{"type": "azure-openai", "apiKey": "k", "apiVersion": "2024 10 21"}), "apiVersion"},
			// Azure's model is a deployment name in the URL's path: it must
			// not leave its segment (TestAzureDeploymentStaysInItsSegment).
			{"Azure deployment with a slash", base(map[string]any{"type": "azure-openai", "apiKey": "k", "defaultModel": "x/../../files"}), "defaultModel"},
			{"Azure deployment of dots", base(map[string]any{"type": "azure-openai", "apiKey": "k", "defaultModel": ".."}), "defaultModel"},
			// An HTTP header cannot carry a control character: the key would
			// be saved and every call fail with a 502 that names no cause.
			{"newline in apiKey", base(map[string]any{"apiKey": "sk-abc\ndef-1234567890"}), "apiKey"},
			{"CR in apiKey", base(map[string]any{"apiKey": "sk-abc\rdef-1234567890"}), "apiKey"},
			{"tab in apiKey", base(map[string]any{"apiKey": "sk-abc\tdef-1234567890"}), "apiKey"},
			// The client appends the API's path to baseUrl, so a query or a
			// fragment would swallow it (".../v1?x=1/chat/completions").
			{"query in baseUrl", base(map[string]any{"baseUrl": h.up.URL() + "?api-version=1"}), "baseUrl"},
			{"empty query in baseUrl", base(map[string]any{"baseUrl": h.up.URL() + "?"}), "baseUrl"},
			{"fragment in baseUrl", base(map[string]any{"baseUrl": h.up.URL() + "#x"}), "baseUrl"},
			{"port out of range", base(map[string]any{"baseUrl": "http://127.0.0.1:99999/v1"}), "baseUrl"},
			{"port zero", base(map[string]any{"baseUrl": "http://127.0.0.1:0/v1"}), "baseUrl"},
			// Private upstreams are allowed here; metadata addresses never.
			{"metadata address", base(map[string]any{"baseUrl": "http://169.254.169.254/latest/meta-data"}), "baseUrl"},
			{"metadata address, IPv6", base(map[string]any{"baseUrl": "http://[fd00:ec2::254]/v1"}), "baseUrl"},
			{"link-local address with a zone", base(map[string]any{"baseUrl": "http://[fe80::1%25eth0]:8080/v1"}), "baseUrl"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := h.call("POST", "/api/v1/ai-providers", h.admin, tt.body)
				if r.Status != 400 {
					t.Fatalf("status %d %s, want 400", r.Status, r.Body)
				}
				if f := r.JSON()["error"].(map[string]any)["details"].(map[string]any)["field"]; f != tt.field {
					t.Errorf("details.field = %v, want %s", f, tt.field)
				}
			})
		}
		ok := h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_TEST"}))
		if ok["hasApiKey"] != true || ok["apiKeyRef"] != "env:PARLEY_PROVIDER_KEY_TEST" {
			t.Errorf("provider with a ref = %v", ok)
		}
		// A key of characters beyond ASCII gets a hint of whole characters
		// (PostgreSQL refuses a cut one).
		wide := h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(map[string]any{"apiKey": strings.Repeat("é", 24)}))
		if wide["apiKeyHint"] != "ééé…éééé" {
			t.Errorf("apiKeyHint = %q, want ééé…éééé", wide["apiKeyHint"])
		}
		// A key pasted with the whitespace around it (a trailing newline) is
		// stored without it: the upstream would refuse " sk-…" or "sk-…\n".
		padded := h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(map[string]any{"apiKey": "  " + upstreamKey + "\n"}))
		if padded["apiKeyHint"] != "sk-…6789" {
			t.Errorf("apiKeyHint of a padded key = %q, want sk-…6789", padded["apiKeyHint"])
		}
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": padded["id"], "messages": []any{userMessage("x")}})
		if got := h.up.Last().APIKey; got != upstreamKey {
			t.Errorf("upstream key = %q, want it without the whitespace around it", got)
		}
		if r := h.call("PATCH", "/api/v1/ai-providers/"+padded["id"].(string), h.admin, map[string]any{"apiKey": "sk-new\nkey-1234567890"}); r.Status != 400 {
			t.Errorf("PATCH of a key with a newline = %d %s, want 400", r.Status, r.Body)
		}
		// A key-less OpenAI-compatible server (Ollama) is fine; removing
		// the key of a provider that needs one is not, and changes nothing.
		h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(nil))
		claude := h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(map[string]any{"type": "anthropic", "apiKey": upstreamKey}))["id"].(string)
		if r := h.call("PATCH", "/api/v1/ai-providers/"+claude, h.admin, map[string]any{"apiKey": ""}); r.Status != 400 {
			t.Errorf("removing an anthropic provider's key = %d %s, want 400", r.Status, r.Body)
		}
		if got := h.must(200, "GET", "/api/v1/ai-providers/"+claude, h.admin, nil); got["hasApiKey"] != true {
			t.Errorf("a refused PATCH removed the key: %v", got)
		}
		// A required field sent empty in a PATCH is told to be left out,
		// not that it is missing.
		if r := h.call("PATCH", "/api/v1/ai-providers/"+claude, h.admin, map[string]any{"defaultModel": ""}); r.Status != 400 ||
			r.ErrorMessage() != "defaultModel, when sent, must not be empty; leave it out to keep the AI provider's" {
			t.Errorf("PATCH of an empty defaultModel = %d %s, want 400 saying to leave it out", r.Status, r.Body)
		}
		// An API version pasted with whitespace around it is kept without.
		az := h.must(201, "POST", "/api/v1/ai-providers", h.admin, base(map[string]any{"type": "azure-openai", "apiKey": "k", "apiVersion": " 2024-10-21\n"}))
		if az["apiVersion"] != "2024-10-21" {
			t.Errorf("apiVersion sent with whitespace around it = %q, want 2024-10-21", az["apiVersion"])
		}
		// One stored before it was checked stays, and the provider's other
		// fields (its key) can still be changed.
		if err := h.app.Store.DB().Exec("UPDATE ai_providers SET api_version = ? WHERE id = ?", "2024-10-21&x=1", az["id"]).Error; err != nil {
			t.Fatal(err)
		}
		h.must(200, "PATCH", "/api/v1/ai-providers/"+az["id"].(string), h.admin, map[string]any{"name": "renamed", "apiKey": "sk-rotated-1234567890"})
	})
}

// A PATCH that clears apiKey and sets apiKeyRef in one body switches the
// provider to the reference, as the same fields do on create; it must not
// drop the key and ignore the reference.
func TestProviderPatchSwitchesKeyToRef(t *testing.T) {
	t.Setenv("PARLEY_PROVIDER_KEY_TEST", "sk-test-from-env-1234567890")
	h := newHarness(t, dbtest.SQLite(t), nil)
	p := h.project(h.admin, "p")
	for _, typ := range []string{"openai-compatible", "openai"} {
		t.Run(typ, func(t *testing.T) {
			id := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
				"projectId": p, "name": "n", "type": typ, "baseUrl": h.up.URL(), "defaultModel": "m", "apiKey": upstreamKey,
			})["id"].(string)
			r := h.call("PATCH", "/api/v1/ai-providers/"+id, h.admin, map[string]any{"apiKey": "", "apiKeyRef": "env:PARLEY_PROVIDER_KEY_TEST"})
			if r.Status != 200 {
				t.Fatalf("PATCH = %d %s, want 200", r.Status, r.Body)
			}
			got := h.must(200, "GET", "/api/v1/ai-providers/"+id, h.admin, nil)
			if got["hasApiKey"] != true || got["apiKeyRef"] != "env:PARLEY_PROVIDER_KEY_TEST" || got["apiKeyHint"] != nil {
				t.Errorf("after the PATCH: hasApiKey=%v apiKeyRef=%v apiKeyHint=%v, want true, the reference, none", got["hasApiKey"], got["apiKeyRef"], got["apiKeyHint"])
			}
		})
	}
}

func TestProviderKeyFromEnvironment(t *testing.T) {
	t.Setenv("PARLEY_PROVIDER_KEY_REST_TEST", "sk-from-env-1234567890")
	h := newHarness(t, dbtest.SQLite(t), nil)
	p := h.project(h.admin, "p")
	prov := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
		"projectId": p, "name": "n", "type": "openai-compatible", "baseUrl": h.up.URL(), "defaultModel": "m",
		"apiKeyRef": "env:PARLEY_PROVIDER_KEY_REST_TEST",
	})["id"].(string)
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": prov, "messages": []any{userMessage("x")}})
	if got := lastUpstreamHeader(t, h).Get("Authorization"); got != "Bearer sk-from-env-1234567890" {
		t.Errorf("upstream Authorization = %q", got)
	}
	// A variable not set is refused when named, and the provider keeps
	// its reference; one unset after it was named is a 503 naming it.
	r := h.call("PATCH", "/api/v1/ai-providers/"+prov, h.admin, map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_UNSET_X"})
	if r.Status != 400 || r.ErrorField() != "apiKeyRef" || !strings.Contains(r.ErrorMessage(), "PARLEY_PROVIDER_KEY_UNSET_X, which is not set on this server") {
		t.Errorf("a reference to an unset variable = %d %s, want a 400 naming it", r.Status, r.Body)
	}
	if got := h.must(200, "GET", "/api/v1/ai-providers/"+prov, h.admin, nil)["apiKeyRef"]; got != "env:PARLEY_PROVIDER_KEY_REST_TEST" {
		t.Errorf("after the refused PATCH the reference is %v", got)
	}
	t.Setenv("PARLEY_PROVIDER_KEY_UNSET_X", "sk-soon-gone-1234567890")
	h.must(200, "PATCH", "/api/v1/ai-providers/"+prov, h.admin, map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_UNSET_X"})
	os.Unsetenv("PARLEY_PROVIDER_KEY_UNSET_X")
	r = h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": prov, "messages": []any{userMessage("x")}})
	if r.Status != 503 || !strings.Contains(r.ErrorMessage(), "PARLEY_PROVIDER_KEY_UNSET_X") {
		t.Errorf("unset env key = %d %s, want 503 naming the variable", r.Status, r.Body)
	}

	// The whitespace around the value (an env file's trailing newline) is
	// dropped, as a stored key's is; a control character inside it is a
	// 503 naming the variable, not the value, before any upstream call.
	t.Setenv("PARLEY_PROVIDER_KEY_PADDED", " sk-padded-1234567890\n")
	t.Setenv("PARLEY_PROVIDER_KEY_BROKEN", "sk-broken-12345\n67890")
	h.must(200, "PATCH", "/api/v1/ai-providers/"+prov, h.admin, map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_PADDED"})
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": prov, "messages": []any{userMessage("x")}})
	if got := lastUpstreamHeader(t, h).Get("Authorization"); got != "Bearer sk-padded-1234567890" {
		t.Errorf("upstream Authorization = %q, want the key without its whitespace", got)
	}
	h.must(200, "PATCH", "/api/v1/ai-providers/"+prov, h.admin, map[string]any{"apiKeyRef": "env:PARLEY_PROVIDER_KEY_BROKEN"})
	before := h.up.Count()
	r = h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": prov, "messages": []any{userMessage("x")}})
	if r.Status != 503 || !strings.Contains(r.ErrorMessage(), "PARLEY_PROVIDER_KEY_BROKEN") || !strings.Contains(r.ErrorMessage(), "control character") ||
		strings.Contains(string(r.Body), "sk-broken") || h.up.Count() != before {
		t.Errorf("a key with a newline inside = %d %s, want 503 naming the variable and no upstream call", r.Status, r.Body)
	}
}

// TestOnlyAdminsLendServerKeys: any user may own a project, so an owner
// who could set an apiKeyRef, or move a provider that has one to another
// baseUrl, could have Parley send the operator's key to a server of the
// owner's and read it there. Only an admin may; the owner keeps every
// other change, and may use the provider.
func TestOnlyAdminsLendServerKeys(t *testing.T) {
	t.Setenv("PARLEY_PROVIDER_KEY_LENT", "sk-operator-key-1234567890")
	h := newHarness(t, dbtest.SQLite(t), nil)
	_, owner := h.user("owner")
	p := h.project(owner, "p")
	ref := map[string]any{"projectId": p, "name": "n", "type": "openai-compatible", "baseUrl": h.up.URL(), "defaultModel": "m",
		"apiKeyRef": "env:PARLEY_PROVIDER_KEY_LENT"}
	if r := h.call("POST", "/api/v1/ai-providers", owner, ref); r.Status != 403 || !strings.Contains(r.ErrorMessage(), "only an admin") {
		t.Errorf("an owner creating a provider with apiKeyRef = %d %s, want 403", r.Status, r.Body)
	} // Whether a variable is set is the operator's to know: a reference to
	// one that is not is the same 403 to anyone else.
	unset := maps.Clone(ref)
	unset["apiKeyRef"] = "env:PARLEY_PROVIDER_KEY_NEVER_SET"
	if r := h.call("POST", "/api/v1/ai-providers", owner, unset); r.Status != 403 {
		t.Errorf("an owner's reference to an unset variable = %d %s, want 403", r.Status, r.Body)
	}

	own := h.provider(owner, p)
	if r := h.call("PATCH", "/api/v1/ai-providers/"+own, owner, map[string]any{"apiKey": "", "apiKeyRef": "env:PARLEY_PROVIDER_KEY_LENT"}); r.Status != 403 {
		t.Errorf("an owner setting apiKeyRef = %d %s, want 403", r.Status, r.Body)
	}
	lent := h.must(201, "POST", "/api/v1/ai-providers", h.admin, ref)["id"].(string)
	elsewhere := strings.Replace(h.up.URL(), "127.0.0.1", "localhost", 1)
	if r := h.call("PATCH", "/api/v1/ai-providers/"+lent, owner, map[string]any{"baseUrl": elsewhere}); r.Status != 403 {
		t.Errorf("an owner moving a lent key's provider = %d %s, want 403", r.Status, r.Body)
	}
	h.must(200, "PATCH", "/api/v1/ai-providers/"+lent, owner, map[string]any{"name": "renamed", "defaultModel": "m2"})
	h.must(200, "POST", "/api/v1/chats/completions", owner, map[string]any{"aiProviderId": lent, "messages": []any{userMessage("x")}})
	if got := lastUpstreamHeader(t, h).Get("Authorization"); got != "Bearer sk-operator-key-1234567890" {
		t.Errorf("upstream Authorization = %q, want the lent key", got)
	}
	h.must(200, "PATCH", "/api/v1/ai-providers/"+lent, owner, map[string]any{"apiKey": "sk-owner-own-key-0987654321"}) // replacing it is fine
	got := h.must(200, "GET", "/api/v1/ai-providers/"+lent, owner, nil)
	if got["apiKeyRef"] != nil || got["hasApiKey"] != true {
		t.Errorf("after the owner's own key: apiKeyRef %v, hasApiKey %v; want none, true", got["apiKeyRef"], got["hasApiKey"])
	}
	// Moved in the request that drops the lent key, a provider lends
	// nothing: the owner may, and no key goes to the new address.
	lent = h.must(201, "POST", "/api/v1/ai-providers", h.admin, ref)["id"].(string)
	moved := h.must(200, "PATCH", "/api/v1/ai-providers/"+lent, owner, map[string]any{"baseUrl": elsewhere, "apiKey": ""})
	if moved["apiKeyRef"] != nil || moved["hasApiKey"] != false || moved["baseUrl"] != elsewhere {
		t.Errorf("moved with its key dropped: %v; want no key and the new baseUrl", moved)
	}
	h.must(200, "POST", "/api/v1/chats/completions", owner, map[string]any{"aiProviderId": lent, "messages": []any{userMessage("x")}})
	if got := lastUpstreamHeader(t, h).Get("Authorization"); got != "" {
		t.Errorf("upstream Authorization after the move = %q, want none", got)
	}
}

// TestMovingAProviderTakesItsKeyAgain: a stored key is write-only, even to
// the project's owners, so a PATCH that changes the baseUrl of a provider
// with one must send the key again (or remove it): else any owner could
// point the provider at a server of theirs and read there a key another
// owner, or an admin, stored. Nothing changes on the refusal.
func TestMovingAProviderTakesItsKeyAgain(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		_, coOwner := h.user("co-owner")
		w := h.world() // its provider has the admin's key
		uid := h.must(200, "GET", "/api/v1/me", coOwner, nil)["id"].(string)
		h.setRole(h.admin, w.project, uid, "owner")
		path := "/api/v1/ai-providers/" + w.provider
		before := h.must(200, "GET", path, h.admin, nil)
		if before["hasApiKey"] != true {
			t.Fatalf("the world's provider has no key: %v", before)
		}
		elsewhere := strings.Replace(h.up.URL(), "127.0.0.1", "localhost", 1)
		r := h.call("PATCH", path, coOwner, map[string]any{"baseUrl": elsewhere, "name": "moved"})
		if r.Status != 400 || r.JSON()["error"].(map[string]any)["details"].(map[string]any)["field"] != "apiKey" {
			t.Fatalf("moving a provider without its key = %d %s; want 400 naming apiKey", r.Status, r.Body)
		}
		if after := h.must(200, "GET", path, h.admin, nil); after["baseUrl"] != before["baseUrl"] || after["name"] != before["name"] {
			t.Errorf("the refused PATCH changed the provider: %v", after)
		}
		h.must(200, "PATCH", path, coOwner, map[string]any{"baseUrl": elsewhere, "apiKey": "sk-co-owner-key-1234567890"})
		h.must(200, "PATCH", path, coOwner, map[string]any{"baseUrl": h.up.URL(), "apiKey": ""}) // or without a key
		h.must(200, "PATCH", path, coOwner, map[string]any{"baseUrl": elsewhere})                // which has none to take
		h.must(200, "PATCH", path, coOwner, map[string]any{"baseUrl": elsewhere, "name": "same place"})
	})
}

func TestSSRFGuard(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.AllowPrivateUpstreams = false })
	p := h.project(h.admin, "p")
	// A metadata address is refused whatever the switch says, and its
	// error does not advise setting it.
	const private, metadata = "PARLEY_ALLOW_PRIVATE_UPSTREAMS", "metadata address, which no AI provider may use"
	for u, want := range map[string]string{h.up.URL(): private, "http://10.0.0.8/v1": private, "http://169.254.169.254/latest": metadata,
		"http://[::1]:8080/v1": private, "http://localhost:1/v1": private, "http://100.100.100.200/latest": metadata,
		"http://[64:ff9b::a9fe:a9fe]/latest": metadata, "http://0.1.2.3/v1": private} {
		r := h.call("POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": p, "name": "n", "type": "openai-compatible", "baseUrl": u, "defaultModel": "m",
		})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), want) {
			t.Errorf("baseUrl %s = %d %s, want 400 saying %q", u, r.Status, r.Body, want)
		}
	}
}

func TestEnvelopeLimitsAndRequestIDs(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.MaxBodyBytes = 1024 })
	p := h.project(h.admin, "p")
	r := h.call("POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "big", "content": strings.Repeat("x", 2048)})
	if r.Status != 413 || r.ErrorCode() != "payload_too_large" || !strings.Contains(r.ErrorMessage(), "over the 1024-byte limit; send a smaller one") {
		t.Errorf("oversized body = %d %s, want 413 saying the limit and what to do", r.Status, r.Body)
	}
	if got := len(h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any)); got != 0 {
		t.Errorf("an oversized body created %d documents", got)
	}

	req, _ := http.NewRequestWithContext(context.Background(), "GET", h.srv.URL+"/api/v1/nope", nil)
	req.Header.Set("X-Request-Id", "trace-123")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 && res.StatusCode != 404 {
		t.Errorf("unknown route = %d", res.StatusCode)
	}
	if got := res.Header.Get("X-Request-Id"); got != "trace-123" {
		t.Errorf("X-Request-Id = %q, want the caller's", got)
	}
	health := h.call("GET", "/healthz", "", nil)
	if health.Status != 200 || health.Header.Get("X-Request-Id") == "" {
		t.Errorf("/healthz = %d, X-Request-Id %q", health.Status, health.Header.Get("X-Request-Id"))
	}
	if r := h.call("GET", "/readyz", "", nil); r.Status != 200 {
		t.Errorf("/readyz = %d", r.Status)
	}
	// Each request's access log line carries its id: the caller's, or the
	// one the server made and returned. Paths are route patterns.
	logs := h.finalLogs()
	for id, path := range map[string]string{"trace-123": "unmatched", health.Header.Get("X-Request-Id"): "/healthz"} {
		found := false
		for _, line := range strings.Split(logs, "\n") {
			found = found || (strings.Contains(line, "msg=request ") && strings.Contains(line, "request_id="+id+" ") && strings.Contains(line, "path="+path))
		}
		if !found {
			t.Errorf("no access log line of %s carries request_id=%s:\n%s", path, id, logs)
		}
	}
	// Every line of a request starts with its id, the error's (logged at
	// debug) as the access log's.
	first := regexp.MustCompile(`^time=\S+ level=\S+ msg=("[^"]*"|\S+) request_id=trace-123 `)
	refused := false
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "trace-123") && !first.MatchString(line) {
			t.Errorf("a line of request trace-123 does not start with its request_id: %s", line)
		}
		refused = refused || strings.Contains(line, `msg="request refused" request_id=trace-123`)
	}
	if !refused {
		t.Errorf("the refusal of request trace-123 was not logged:\n%s", logs)
	}
}

// TestNoSecretInLogs runs completions, successes and upstream failures
// whose bodies repeat the provider key, over JSON and streams, through an
// OpenAI-wire and an Anthropic provider, over REST and MCP, and then reads
// every response, tool result and log line for the provider key and the
// callers' API keys.
func TestNoSecretInLogs(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w, aw := h.world(), h.anthropicWorld()
		leaky := `{"type":"error","error":{"message":"Incorrect API key provided: ` + upstreamKey + `","type":"invalid_request_error"}}`
		var bodies []string
		mcpc := h.mcpSession(h.admin)
		for _, chat := range []string{w.chat, aw.anthropicChat} {
			path := "/api/v1/chats/" + chat + "/completions"
			for _, stream := range []bool{false, true} {
				send := func(key string, content string, behaviors ...llmtest.Behavior) {
					for _, b := range behaviors {
						h.up.Enqueue(b)
					}
					body := map[string]any{"stream": stream, "debug": true, "messages": []any{userMessage(content)}}
					bodies = append(bodies, string(h.call("POST", path, key, body).Body))
				}
				call := func(content string, behaviors ...llmtest.Behavior) {
					for _, b := range behaviors {
						h.up.Enqueue(b)
					}
					req := mcpgo.CallToolRequest{}
					req.Params.Name = "create-chat-completion-for-chat"
					req.Params.Arguments = map[string]any{"chatId": chat, "debug": true, "messages": []any{userMessage(content)}}
					if stream {
						req.Params.Meta = &mcpgo.Meta{ProgressToken: "secrets"}
					}
					res, err := mcpc.CallTool(context.Background(), req)
					out, _ := json.Marshal(res)
					bodies = append(bodies, fmt.Sprint(string(out), err))
				}
				send(h.admin, "x")
				// The key in the caller's own message: debug shows it redacted.
				send(h.admin, "my key is "+upstreamKey, llmtest.Behavior{Reply: "noted"})
				if b := bodies[len(bodies)-1]; !strings.Contains(b, "[redacted]") {
					t.Errorf("debug of a message holding the key shows no redaction: %s", b)
				}
				send(h.admin, "x", llmtest.Behavior{Status: 401, Body: leaky})
				send(h.admin, "x", llmtest.Behavior{Status: 500, Body: leaky}, llmtest.Behavior{Status: 500, Body: leaky}, llmtest.Behavior{Status: 500, Body: leaky})
				send(h.admin, "x", llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1})
				send("pk_wrong_key_value", "x")
				call("my key is "+upstreamKey, llmtest.Behavior{Reply: "noted"})
				call("x", llmtest.Behavior{Status: 401, Body: leaky})
				call("x", llmtest.Behavior{Status: 500, Body: leaky}, llmtest.Behavior{Status: 500, Body: leaky}, llmtest.Behavior{Status: 500, Body: leaky})
				call("x", llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1})
			}
		}
		bodies = append(bodies, string(h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{}}).Body))
		mcpc.Close()
		logs := h.finalLogs()
		if logs == "" {
			t.Fatal("no logs were written")
		}
		for _, secret := range []string{upstreamKey, h.admin, "pk_wrong_key_value"} {
			if strings.Contains(logs, secret) {
				t.Errorf("logs contain a secret %q…", secret[:6])
			}
			for i, b := range bodies {
				if strings.Contains(b, secret) {
					t.Errorf("response %d contains a secret %q…: %s", i, secret[:6], b)
				}
			}
		}
	})
}

// TestUndecryptableProviderKey: a key sealed under a master key the server
// does not hold (PARLEY_SECRET_KEY changed without rotating) is a 503 whose
// message says both fixes, the operator's and the owner's, and leaks nothing.
func TestUndecryptableProviderKey(t *testing.T) {
	st := dbtest.SQLite(t)
	w := newHarness(t, st, nil).world()
	h := newHarness(t, st, nil) // the same database, under another master key
	r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Fatalf("completion = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	for _, want := range []string{w.provider, "PARLEY_SECRET_KEY", "PARLEY_OLD_SECRET_KEYS", "apiKey"} {
		if !strings.Contains(r.ErrorMessage(), want) {
			t.Errorf("message %q does not name %s", r.ErrorMessage(), want)
		}
	}
	if strings.Contains(string(r.Body), upstreamKey) {
		t.Errorf("the answer carries the key: %s", r.Body)
	}
}
