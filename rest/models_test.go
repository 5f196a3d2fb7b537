package rest_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
)

// TestModels: a provider's models, asked of it, in OpenAI's shape, at the
// paths OpenAI's SDKs ask with either completion base URL; Anthropic's
// too, in the same shape. A list is kept for a while, unless its provider
// changes.
func TestModels(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		aw := h.anthropicWorld()
		for _, tc := range []struct {
			name, path, owner string
			asks              int // the requests upstream
		}{
			{"stateless", "/api/v1/models?aiProviderId=" + w.provider, "llmtest", 1},
			{"per chat, the same provider's, kept", "/api/v1/chats/" + w.chat + "/models", "llmtest", 0},
			{"anthropic", "/api/v1/chats/" + aw.anthropicChat + "/models", "anthropic", 1},
			{"changed provider", "/api/v1/chats/" + w.chat + "/models", "llmtest", 1}, // after the PATCH below
		} {
			if tc.name == "changed provider" {
				h.must(200, "PATCH", "/api/v1/ai-providers/"+w.provider, h.admin, map[string]any{"defaultModel": "fake-large"})
			}
			t.Run(tc.name, func(t *testing.T) {
				before := h.up.Count()
				got := h.must(200, "GET", tc.path, h.admin, nil)
				if got["object"] != "list" || got["nextCursor"] != nil {
					t.Errorf("object %v, nextCursor %v; want list and null", got["object"], got["nextCursor"])
				}
				var ids []string
				for _, m := range got["data"].([]any) {
					m := m.(map[string]any)
					ids = append(ids, m["id"].(string))
					if m["object"] != "model" || m["owned_by"] != tc.owner || m["created"].(float64) < 1.7e9 {
						t.Errorf("model %v: want object model, owned_by %s, created in Unix seconds", m, tc.owner)
					}
				}
				if !slices.Equal(ids, llmtest.DefaultModels) {
					t.Errorf("models %q, want the upstream's %q", ids, llmtest.DefaultModels)
				}
				if got := h.up.Count() - before; got != tc.asks {
					t.Errorf("%d requests upstream, want %d", got, tc.asks)
				}
				if last := h.up.Last(); tc.asks > 0 && (!last.ListModels || last.APIKey != upstreamKey) {
					t.Errorf("upstream's last request a model list %v, with the provider's key %v; want both", last.ListModels, last.APIKey == upstreamKey)
				}
			})
		}
	})
}

// TestModel: one model of a provider's list, where OpenAI's SDKs retrieve
// it, by either base URL; a name with a slash whole or escaped; a name
// the provider does not list a 404 saying where the list is.
func TestModel(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.SetModels(0, "fake-small", "meta-llama/Llama-3.3-70B", "qwen-50%-sparse", "a%2Fb")
		for _, path := range []string{
			"/api/v1/models/fake-small?aiProviderId=" + w.provider,
			"/api/v1/chats/" + w.chat + "/models/fake-small",
		} {
			got := h.must(200, "GET", path, h.admin, nil)
			if got["id"] != "fake-small" || got["object"] != "model" || got["owned_by"] != "llmtest" {
				t.Errorf("GET %s = %v, want the model fake-small", path, got)
			}
		}
		for _, name := range []string{"meta-llama/Llama-3.3-70B", "meta-llama%2FLlama-3.3-70B"} {
			if got := h.must(200, "GET", "/api/v1/chats/"+w.chat+"/models/"+name, h.admin, nil); got["id"] != "meta-llama/Llama-3.3-70B" {
				t.Errorf("GET …/models/%s = %v, want the model with the slash", name, got)
			}
		}
		// A name is unescaped once, as any path parameter is.
		for escaped, name := range map[string]string{"qwen-50%25-sparse": "qwen-50%-sparse", "a%252Fb": "a%2Fb"} {
			if got := h.must(200, "GET", "/api/v1/chats/"+w.chat+"/models/"+escaped, h.admin, nil); got["id"] != name {
				t.Errorf("GET …/models/%s = %v, want the model %s", escaped, got, name)
			}
		}
		r := h.call("GET", "/api/v1/chats/"+w.chat+"/models/gpt-9", h.admin, nil)
		if r.Status != 404 || !strings.Contains(r.ErrorMessage(), `no model "gpt-9"`) || !strings.Contains(r.ErrorMessage(), "/api/v1/chats/"+w.chat+"/models") {
			t.Errorf("an unlisted model = %d %s, want 404 saying where the list is", r.Status, r.Body)
		}
		if r := h.call("GET", "/api/v1/models/fake-small", h.admin, nil); r.Status != 400 || r.ErrorField() != "aiProviderId" {
			t.Errorf("a model without aiProviderId = %d %s, want 400 naming aiProviderId", r.Status, r.Body)
		}
	})
}

// TestModelsRefused: what a model list refuses, each answered before a
// call upstream, and the provider's failures, as a completion's are,
// without its key.
func TestModelsRefused(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		azure := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": w.project, "name": "az", "type": "azure-openai", "baseUrl": h.up.RootURL(),
			"defaultModel": "deployment", "apiKey": upstreamKey,
		})["id"].(string)
		for _, tc := range []struct {
			name, path  string
			status      int
			field, says string
		}{
			{"no provider", "/api/v1/models", 400, "aiProviderId", "aiProviderId is required"},
			{"empty provider", "/api/v1/models?aiProviderId=", 400, "aiProviderId", "aiProviderId is empty"},
			{"a chat's id", "/api/v1/models?aiProviderId=" + w.chat, 400, "aiProviderId", "must be an id starting with"},
			{"unknown parameter", "/api/v1/models?aiProviderId=" + w.provider + "&limit=5", 400, "limit", "takes aiProviderId"},
			{"a query on a chat's", "/api/v1/chats/" + w.chat + "/models?aiProviderId=" + w.provider, 400, "aiProviderId", "takes none"},
			{"azure", "/api/v1/models?aiProviderId=" + azure, 400, "", "deployment names"},
			{"no such provider", "/api/v1/models?aiProviderId=aip_0000000000000000000000000", 404, "", "does not exist"},
			{"no such chat", "/api/v1/chats/cht_0000000000000000000000000/models", 404, "", "does not exist"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := h.up.Count()
				r := h.call("GET", tc.path, h.admin, nil)
				if r.Status != tc.status || r.ErrorField() != tc.field || !strings.Contains(r.ErrorMessage(), tc.says) {
					t.Errorf("%s = %d, field %q: %s; want %d, field %q, saying %q", tc.path, r.Status, r.ErrorField(), r.Body, tc.status, tc.field, tc.says)
				}
				if h.up.Count() != before {
					t.Error("the refused request reached the upstream")
				}
			})
		}
		for _, tc := range []struct {
			name   string
			b      llmtest.Behavior
			status int
			code   string
			header string // a response header it must carry
		}{
			{"key refused", llmtest.Behavior{Status: 401}, 502, "upstream_error", ""},
			{"rate limited", llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"17"}}}, 429, "rate_limited", "Retry-After"},
			{"no list", llmtest.Behavior{Status: 404}, 502, "upstream_error", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h.up.Enqueue(tc.b)
				r := h.call("GET", "/api/v1/chats/"+w.chat+"/models", h.admin, nil)
				if r.Status != tc.status || r.ErrorCode() != tc.code {
					t.Fatalf("= %d %s: %s; want %d %s", r.Status, r.ErrorCode(), r.Body, tc.status, tc.code)
				}
				if tc.header != "" && r.Header.Get(tc.header) == "" {
					t.Errorf("no %s header", tc.header)
				}
				if strings.Contains(fmt.Sprint(r.Header)+string(r.Body), upstreamKey) {
					t.Error("the response carries the provider's key")
				}
			})
		}
		if strings.Contains(h.finalLogs(), upstreamKey) {
			t.Error("the logs carry the provider's key")
		}
	})
}

// TestModelsAskedTogether: requests that find no list kept, at once, make
// one call to the provider between them.
func TestModelsAskedTogether(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond})
		for _, r := range sendTogether(t, 8, func(i int) (*response, error) {
			path := "/api/v1/models?aiProviderId=" + w.provider
			if i%2 == 1 {
				path = "/api/v1/chats/" + w.chat + "/models"
			}
			return h.send("GET", path, h.admin, nil)
		}) {
			if r.Status != 200 || len(r.JSON()["data"].([]any)) != len(llmtest.DefaultModels) {
				t.Errorf("= %d %s, want the list", r.Status, r.Body)
			}
		}
		if got := h.up.Count(); got != 1 {
			t.Errorf("%d calls upstream for 8 requests at once, want 1", got)
		}
	})
}
