package rest_test

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	validator "github.com/santhosh-tekuri/jsonschema/v6"
)

// TestNullsMatchOpenAPI holds openapi.json's request schemas to how the
// server reads null: a create's or a completion's body may send each field
// it does not require as null, answered as the body without it (as OpenAI's
// clients send unset parameters), which the document allows; a PATCH's null is a 400,
// which the document refuses too.
func TestNullsMatchOpenAPI(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		me := h.must(200, "GET", "/api/v1/me", h.admin, nil)["id"].(string)
		for _, c := range []struct {
			route, path string
			body        map[string]any
		}{
			{"POST /api/v1/users", "/api/v1/users", map[string]any{"name": "nully"}},
			{"POST /api/v1/users/{userId}/api-keys", "/api/v1/users/" + me + "/api-keys", map[string]any{"name": "nully"}},
			{"POST /api/v1/projects", "/api/v1/projects", map[string]any{"name": "nully"}},
			{"POST /api/v1/ai-providers", "/api/v1/ai-providers", map[string]any{"projectId": w.project, "name": "nully", "type": "openai-compatible", "baseUrl": h.up.URL(), "defaultModel": "m"}},
			{"POST /api/v1/documents", "/api/v1/documents", map[string]any{"projectId": w.project, "name": "nully", "content": "x"}},
			{"POST /api/v1/chats", "/api/v1/chats", map[string]any{"projectId": w.project, "name": "nully", "aiProviderId": w.provider}},
			{"POST /api/v1/chats/completions", "/api/v1/chats/completions", map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}}},
			{"POST /api/v1/chats/{chatId}/completions", "/api/v1/chats/" + w.chat + "/completions", map[string]any{"messages": []any{userMessage("hi")}}},
		} {
			t.Run(c.route, func(t *testing.T) {
				method, tmpl, _ := strings.Cut(c.route, " ")
				sch, props, required := requestSchema(t, method, tmpl)
				for _, name := range props {
					if slices.Contains(required, name) {
						continue
					}
					body := maps.Clone(c.body)
					body[name] = nil
					if err := sch.Validate(any(body)); err != nil {
						t.Errorf("%s with %s null: openapi.json refuses it: %v", c.route, name, err)
					}
					leftOut := maps.Clone(c.body)
					delete(leftOut, name)
					want := h.call(method, c.path, h.admin, leftOut)
					if r := h.call(method, c.path, h.admin, body); r.Status != want.Status || r.ErrorField() != want.ErrorField() {
						t.Errorf("%s with %s null = %d %s; left out, %d %s", c.route, name, r.Status, r.Body, want.Status, want.Body)
					}
				}
			})
		}
		t.Run("PATCH", func(t *testing.T) {
			sch, _, _ := requestSchema(t, http.MethodPatch, "/api/v1/chats/{chatId}")
			body := map[string]any{"model": nil}
			if sch.Validate(any(body)) == nil {
				t.Errorf("openapi.json takes a PATCH's null, which the server refuses")
			}
			if r := h.call(http.MethodPatch, "/api/v1/chats/"+w.chat, h.admin, body); r.Status != 400 || r.ErrorField() != "model" {
				t.Errorf("PATCH with model null = %d %s, want 400 naming model", r.Status, r.Body)
			}
		})
	})
}

// requestSchema compiles the request body's schema of an operation of
// openapi.json, with the names of its properties and those it requires.
func requestSchema(t *testing.T, method, tmpl string) (*validator.Schema, []string, []string) {
	t.Helper()
	doc, err := openAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	op := doc.(map[string]any)["paths"].(map[string]any)[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	raw := op["requestBody"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	var required []string
	req, _ := raw["required"].([]any)
	for _, r := range req {
		required = append(required, r.(string))
	}
	props := slices.Sorted(maps.Keys(raw["properties"].(map[string]any)))
	esc := strings.NewReplacer("~", "~0", "/", "~1")
	sch, err := docSchema("openapi.json#/paths/" + esc.Replace(tmpl) + "/" + strings.ToLower(method) + "/requestBody/content/application~1json/schema")
	if err != nil {
		t.Fatal(err)
	}
	return sch, props, required
}
