package rest_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	validator "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/parleyhq/parley/llm/llmtest"
)

// TestResponsesMatchOpenAPI validates real responses against the schemas
// openapi.json gives them, for the fields that are null in some answers
// (a last page's nextCursor, a key's revokedAt and expiresAt, the content of a
// reply that only calls tools, the updatedAt of limits never set): a
// strict generated client rejects a null its schema does not allow.
func TestResponsesMatchOpenAPI(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		doc := h.must(200, "GET", "/openapi.json", "", nil)
		w := h.world()
		me := h.must(200, "GET", "/api/v1/me", h.admin, nil)["id"].(string)
		k := h.must(201, "POST", "/api/v1/users/"+me+"/api-keys", h.admin, map[string]any{"name": "old"})["id"].(string)
		h.must(200, "DELETE", "/api/v1/users/"+me+"/api-keys/"+k, h.admin, nil)
		h.must(201, "POST", "/api/v1/users/"+me+"/api-keys", h.admin, map[string]any{"name": "ci", "expiresAt": time.Now().AddDate(1, 0, 0).Format(time.RFC3339)})
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls})
		for _, c := range []struct {
			route, path string
			body        any
		}{
			{"GET /api/v1/projects", "/api/v1/projects", nil},
			{"GET /api/v1/users/{userId}/api-keys", "/api/v1/users/" + me + "/api-keys", nil},
			{"DELETE /api/v1/users/{userId}/api-keys/{keyId}", "/api/v1/users/" + me + "/api-keys/" + k, nil},
			{"GET /api/v1/projects/{projectId}/limits", "/api/v1/projects/" + w.project + "/limits", nil},
			{"POST /api/v1/chats/{chatId}/completions", "/api/v1/chats/" + w.chat + "/completions",
				map[string]any{"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools()}},
		} {
			method, route, _ := strings.Cut(c.route, " ")
			r := h.call(method, c.path, h.admin, c.body)
			if r.Status != 200 {
				t.Fatalf("%s = %d %s", c.route, r.Status, r.Body)
			}
			op := doc["paths"].(map[string]any)[route].(map[string]any)[strings.ToLower(method)].(map[string]any)
			schema := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"]
			comp := validator.NewCompiler()
			if err := comp.AddResource("response.json", schema); err != nil {
				t.Fatal(err)
			}
			sch, err := comp.Compile("response.json")
			if err != nil {
				t.Fatal(err)
			}
			inst, err := validator.UnmarshalJSON(bytes.NewReader(r.Body))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("%s: the response does not match openapi.json: %v\n%s", c.route, err, r.Body)
			}
		}
	})
}

// TestRateLimitHeadersInOpenAPI: every header a real 429 of Parley's
// limits carries (Retry-After and RateLimit-*), and an admitted
// completion's RateLimit-*, is declared in the OpenAPI document's 429 and
// 200 of the completion endpoints, for clients generated from it.
func TestRateLimitHeadersInOpenAPI(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		doc := h.must(200, "GET", "/openapi.json", "", nil)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 1})
		body := map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}}
		sent := func(r *response, status, want int) []string {
			t.Helper()
			if r.Status != status {
				t.Fatalf("completion = %d %s, want %d", r.Status, r.Body, status)
			}
			var names []string
			for name := range r.Header {
				if name == "Retry-After" || strings.HasPrefix(name, "Ratelimit-") {
					names = append(names, name)
				}
			}
			if len(names) != want {
				t.Fatalf("the %d carries %v; want %d of Retry-After and RateLimit-*", status, names, want)
			}
			return names
		}
		admitted := sent(h.call("POST", "/api/v1/chats/completions", h.admin, body), 200, 4)
		refused := sent(h.call("POST", "/api/v1/chats/completions", h.admin, body), 429, 5)
		for _, route := range []string{"/api/v1/chats/completions", "/api/v1/chats/{chatId}/completions"} {
			for status, names := range map[string][]string{"200": admitted, "429": refused} {
				resp := doc["paths"].(map[string]any)[route].(map[string]any)["post"].(map[string]any)["responses"].(map[string]any)[status].(map[string]any)
				declared, _ := resp["headers"].(map[string]any)
				for _, name := range names {
					found := false
					for d := range declared {
						found = found || strings.EqualFold(d, name)
					}
					if !found {
						t.Errorf("POST %s: the %s sends %s, which openapi.json does not declare (headers %v)", route, status, name, declared)
					}
				}
			}
		}
	})
}
