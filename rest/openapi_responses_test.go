package rest_test

import (
	"bytes"
	"strings"
	"testing"

	validator "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/parleyhq/parley/llm/llmtest"
)

// TestResponsesMatchOpenAPI validates real responses against the schemas
// openapi.json gives them, for the fields that are null in some answers
// (a last page's nextCursor, a revoked key's revokedAt, the content of a
// reply that only calls tools, the updatedAt of limits never set): a
// strict generated client rejects a null its schema does not allow.
func TestResponsesMatchOpenAPI(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		doc := h.must(200, "GET", "/openapi.json", "", nil)
		w := h.world()
		me := h.must(200, "GET", "/api/v1/me", h.admin, nil)["id"].(string)
		k := h.must(201, "POST", "/api/v1/users/"+me+"/api-keys", h.admin, map[string]any{"name": "old"})["id"].(string)
		h.must(200, "DELETE", "/api/v1/users/"+me+"/api-keys/"+k, h.admin, nil)
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls})
		for _, c := range []struct {
			route, path string
			body        any
		}{
			{"GET /api/v1/projects", "/api/v1/projects", nil},
			{"GET /api/v1/users/{userId}/api-keys", "/api/v1/users/" + me + "/api-keys", nil},
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
