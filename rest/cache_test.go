package rest_test

import (
	"context"
	"testing"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/llm/llmtest"
)

// The tests here check the read cache (storecache, which every instance
// puts over its store for 2s) against every write on the same instance
// that changes what a cached read returns: the very next request must see
// the change, never the cached copy.

// complete runs a per-chat completion as key and returns its response.
func (h *harness) complete(key, chat string) *response {
	h.t.Helper()
	return h.call("POST", "/api/v1/chats/"+chat+"/completions", key, map[string]any{"messages": []any{userMessage("hi")}})
}

// TestCachedAuthorizationFollowsWritesAtOnce: a member removed, or moved
// to a role without a permission, loses it on the next request, though
// that member's role, chat and provider were all just cached; a member
// given a role gains it at once too.
func TestCachedAuthorizationFollowsWritesAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		aliceID, alice := h.user("alice")
		h.setRole(h.admin, w.project, aliceID, "owner")
		chat, prov := "/api/v1/chats/"+w.chat, "/api/v1/ai-providers/"+w.provider
		warm := func() {
			t.Helper()
			h.must(200, "GET", chat, alice, nil)
			h.must(200, "GET", prov, alice, nil)
			if r := h.complete(alice, w.chat); r.Status != 200 {
				t.Fatalf("completion = %d %s", r.Status, r.Body)
			}
		}

		warm()
		h.setRole(h.admin, w.project, aliceID, "viewer")
		if r := h.call("PATCH", chat, alice, map[string]any{"name": "n"}); r.Status != 403 {
			t.Errorf("PATCH chat right after demotion to viewer = %d %s, want 403", r.Status, r.Body)
		}
		if r := h.complete(alice, w.chat); r.Status != 403 {
			t.Errorf("completion right after demotion to viewer = %d %s, want 403", r.Status, r.Body)
		}
		if r := h.call("PATCH", prov, alice, map[string]any{"name": "n"}); r.Status != 403 {
			t.Errorf("PATCH provider right after demotion to viewer = %d %s, want 403", r.Status, r.Body)
		}

		h.setRole(h.admin, w.project, aliceID, "editor")
		if r := h.complete(alice, w.chat); r.Status != 200 {
			t.Errorf("completion right after promotion to editor = %d %s, want 200", r.Status, r.Body)
		}

		h.must(200, "GET", chat, alice, nil)
		h.must(200, "DELETE", "/api/v1/projects/"+w.project+"/members/"+aliceID, h.admin, nil)
		for _, r := range []*response{
			h.call("GET", chat, alice, nil),
			h.call("GET", prov, alice, nil),
			h.complete(alice, w.chat),
			h.call("POST", "/api/v1/chats/completions", alice, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}}),
			h.call("GET", "/api/v1/projects/"+w.project, alice, nil),
		} {
			if r.Status != 404 {
				t.Errorf("right after removal: %d %s, want 404", r.Status, r.Body)
			}
		}
	})
}

// TestCachedKeyRevokedAtOnce: a key cached as valid answers 401 on the
// request after its revocation.
func TestCachedKeyRevokedAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		aliceID, alice := h.user("alice")
		h.setRole(h.admin, w.project, aliceID, "editor")
		h.must(200, "GET", "/api/v1/me", alice, nil)
		if r := h.complete(alice, w.chat); r.Status != 200 {
			t.Fatalf("completion = %d %s", r.Status, r.Body)
		}
		keys := h.must(200, "GET", "/api/v1/users/"+aliceID+"/api-keys", h.admin, nil)["data"].([]any)
		h.must(200, "DELETE", "/api/v1/users/"+aliceID+"/api-keys/"+keys[0].(map[string]any)["id"].(string), h.admin, nil)
		if r := h.call("GET", "/api/v1/me", alice, nil); r.Status != 401 {
			t.Errorf("GET /me right after revocation = %d, want 401", r.Status)
		}
		if r := h.complete(alice, w.chat); r.Status != 401 {
			t.Errorf("completion right after revocation = %d, want 401", r.Status)
		}
	})
}

// TestCachedProviderFollowsPatchAtOnce: each provider field a completion
// uses is the one the next completion sends upstream after a PATCH.
func TestCachedProviderFollowsPatchAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		prov := "/api/v1/ai-providers/" + w.provider
		if r := h.complete(h.admin, w.chat); r.Status != 200 {
			t.Fatalf("completion = %d %s", r.Status, r.Body)
		}

		const rotated = "sk-rotated-after-a-leak-0000000001"
		h.must(200, "PATCH", prov, h.admin, map[string]any{"apiKey": rotated})
		h.complete(h.admin, w.chat)
		if got := h.up.Last().APIKey; got != rotated {
			t.Errorf("upstream key right after rotation = %q, want the rotated one", got)
		}

		h.must(200, "PATCH", prov, h.admin, map[string]any{"defaultModel": "model-two"})
		h.complete(h.admin, w.chat)
		if got := lastUpstreamBody(t, h)["model"]; got != "model-two" {
			t.Errorf("upstream model right after defaultModel PATCH = %v, want model-two", got)
		}

		up2 := llmtest.NewServer(t)
		h.must(200, "PATCH", prov, h.admin, map[string]any{"baseUrl": up2.URL(), "apiKey": "sk-for-the-second-upstream-000002"})
		before := h.up.Count()
		h.complete(h.admin, w.chat)
		if up2.Count() != 1 || h.up.Count() != before {
			t.Errorf("right after baseUrl PATCH: new upstream got %d requests, old one %d more; want 1 and 0", up2.Count(), h.up.Count()-before)
		}
		if got := up2.Last().APIKey; got != "sk-for-the-second-upstream-000002" {
			t.Errorf("key sent to the new upstream = %q", got)
		}

		// Azure: the apiVersion is a query parameter of every call.
		az := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": w.project, "name": "az", "type": "azure-openai", "baseUrl": h.up.RootURL(),
			"defaultModel": "dep", "apiKey": upstreamKey, "apiVersion": "2024-10-21",
		})["id"].(string)
		azChat := h.chat(h.admin, w.project, az, nil)
		if r := h.complete(h.admin, azChat); r.Status != 200 {
			t.Fatalf("azure completion = %d %s", r.Status, r.Body)
		}
		h.must(200, "PATCH", "/api/v1/ai-providers/"+az, h.admin, map[string]any{"apiVersion": "2025-01-01-preview"})
		h.complete(h.admin, azChat)
		if got := h.up.Last().Query.Get("api-version"); got != "2025-01-01-preview" {
			t.Errorf("api-version right after PATCH = %q, want 2025-01-01-preview", got)
		}
	})
}

// TestCachedChatFollowsWritesAtOnce: a chat's PATCH and DELETE, its
// provider's DELETE and its project's DELETE are seen by the next request.
func TestCachedChatFollowsWritesAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		chat := "/api/v1/chats/" + w.chat
		h.complete(h.admin, w.chat)

		h.must(200, "PATCH", chat, h.admin, map[string]any{"systemMessage": "be brief", "model": "chat-model"})
		h.complete(h.admin, w.chat)
		body := lastUpstreamBody(t, h)
		msgs := body["messages"].([]any)
		if got := msgs[0].(map[string]any)["content"]; got != "be brief" || body["model"] != "chat-model" {
			t.Errorf("right after chat PATCH: system %v, model %v", got, body["model"])
		}

		up2 := llmtest.NewServer(t)
		prov2 := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": w.project, "name": "two", "type": "openai-compatible", "baseUrl": up2.URL(), "defaultModel": "m2", "apiKey": "sk-second-provider-key-00000003",
		})["id"].(string)
		h.must(200, "PATCH", chat, h.admin, map[string]any{"aiProviderId": prov2})
		h.complete(h.admin, w.chat)
		if up2.Count() != 1 {
			t.Errorf("right after moving the chat to another provider, that provider got %d requests, want 1", up2.Count())
		}

		// The old provider is unused now: deleted, it is gone at once.
		h.must(200, "GET", "/api/v1/ai-providers/"+w.provider, h.admin, nil)
		h.must(200, "DELETE", "/api/v1/ai-providers/"+w.provider, h.admin, nil)
		if r := h.call("GET", "/api/v1/ai-providers/"+w.provider, h.admin, nil); r.Status != 404 {
			t.Errorf("GET provider right after DELETE = %d", r.Status)
		}
		if r := h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}}); r.Status != 404 {
			t.Errorf("stateless completion right after provider DELETE = %d %s", r.Status, r.Body)
		}
		// A provider a chat uses is not deleted, and stays usable.
		if r := h.call("DELETE", "/api/v1/ai-providers/"+prov2, h.admin, nil); r.Status != 409 {
			t.Errorf("DELETE of a provider in use = %d %s, want 409", r.Status, r.Body)
		}
		if r := h.complete(h.admin, w.chat); r.Status != 200 {
			t.Errorf("completion after a refused provider DELETE = %d %s", r.Status, r.Body)
		}

		h.must(200, "DELETE", chat, h.admin, nil)
		if r := h.call("GET", chat, h.admin, nil); r.Status != 404 {
			t.Errorf("GET chat right after DELETE = %d", r.Status)
		}
		if r := h.complete(h.admin, w.chat); r.Status != 404 {
			t.Errorf("completion right after chat DELETE = %d %s", r.Status, r.Body)
		}

		// A project's DELETE takes its chats, providers and members along.
		aliceID, alice := h.user("alice")
		p := h.project(h.admin, "gone")
		pp := h.provider(h.admin, p)
		pc := h.chat(h.admin, p, pp, nil)
		h.setRole(h.admin, p, aliceID, "editor")
		h.complete(alice, pc)
		h.must(200, "GET", "/api/v1/ai-providers/"+pp, alice, nil)
		h.must(200, "DELETE", "/api/v1/projects/"+p, h.admin, nil)
		for _, key := range []string{h.admin, alice} {
			for _, r := range []*response{
				h.call("GET", "/api/v1/chats/"+pc, key, nil),
				h.call("GET", "/api/v1/ai-providers/"+pp, key, nil),
				h.complete(key, pc),
				h.call("POST", "/api/v1/chats/completions", key, map[string]any{"aiProviderId": pp, "messages": []any{userMessage("hi")}}),
			} {
				if r.Status != 404 {
					t.Errorf("right after project DELETE: %d %s, want 404", r.Status, r.Body)
				}
			}
		}
	})
}

// TestLimitsFollowPutAtOnce: limits (which the domain caches for 5s) set
// or lifted apply to the next completion, though they were just read.
func TestLimitsFollowPutAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		limits := "/api/v1/projects/" + w.project + "/limits"
		if r := h.complete(h.admin, w.chat); r.Status != 200 { // reads "no limits"
			t.Fatalf("completion = %d %s", r.Status, r.Body)
		}
		h.must(200, "PUT", limits, h.admin, map[string]any{"keyRequestsPerMinute": 1})
		h.complete(h.admin, w.chat)
		if r := h.complete(h.admin, w.chat); r.Status != 429 {
			t.Errorf("second completion right after a limit of 1 = %d %s, want 429", r.Status, r.Body)
		}
		h.must(200, "PUT", limits, h.admin, map[string]any{})
		if r := h.complete(h.admin, w.chat); r.Status != 200 {
			t.Errorf("completion right after the limit was lifted = %d %s, want 200", r.Status, r.Body)
		}
	})
}

// TestMCPSeesWritesAtOnce: MCP over HTTP uses the same cached store as
// REST, so a member REST removed cannot reach the chat by MCP either.
func TestMCPSeesWritesAtOnce(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		aliceID, alice := h.user("alice")
		h.setRole(h.admin, w.project, aliceID, "editor")
		c := h.mcpSession(alice)
		get := func() (*mcpgo.CallToolResult, error) {
			req := mcpgo.CallToolRequest{}
			req.Params.Name = "get-chat"
			req.Params.Arguments = map[string]any{"chatId": w.chat}
			return c.CallTool(context.Background(), req)
		}
		if res, err := get(); err != nil || res.IsError {
			t.Fatalf("get-chat = %+v, %v", res, err)
		}
		h.must(200, "PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"name": "renamed"})
		res, err := get()
		if err != nil || res.IsError {
			t.Fatalf("get-chat = %+v, %v", res, err)
		}
		if sc, _ := res.StructuredContent.(map[string]any); sc["name"] != "renamed" {
			t.Errorf("get-chat right after a REST PATCH = %v, want name renamed", res.StructuredContent)
		}
		h.must(200, "DELETE", "/api/v1/projects/"+w.project+"/members/"+aliceID, h.admin, nil)
		if res, err := get(); err != nil || !res.IsError {
			t.Errorf("get-chat right after removal = %+v, %v; want a not_found result", res, err)
		}
	})
}
