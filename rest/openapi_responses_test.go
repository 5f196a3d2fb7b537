package rest_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
			method, _, _ := strings.Cut(c.route, " ")
			// send holds the answer to its operation's schema (documented).
			if r := h.call(method, c.path, h.admin, c.body); r.Status != 200 {
				t.Fatalf("%s = %d %s", c.route, r.Status, r.Body)
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

// documented checks every JSON answer the tests' requests to the API get
// (send) against the schema openapi.json gives its operation and status
// (an error's: the envelope, Error), so that
// the document is held to what every handler sends, not only to the few
// answers TestResponsesMatchOpenAPI asks for. It returns what is wrong, ""
// when nothing is (or the path is no operation of the document's).
func documented(method, path string, status int, header http.Header, body []byte) string {
	// The MCP transports' answers are JSON-RPC's, which the document
	// lists for completeness only.
	if method == http.MethodHead || !strings.HasPrefix(path, "/api/") || !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
		return ""
	}
	path, _, _ = strings.Cut(path, "?")
	sch, err := responseSchema(method, path, status)
	switch {
	case err != nil:
		return err.Error()
	case sch == nil:
		return ""
	}
	inst, err := validator.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Sprintf("%s %s = %d: the body is not JSON: %v", method, path, status, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Sprintf("%s %s = %d: the answer does not match openapi.json: %v\n%s", method, path, status, err, body)
	}
	return ""
}

var (
	openAPIDoc = sync.OnceValues(func() (any, error) {
		f, err := os.Open("openapi.json")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return validator.UnmarshalJSON(f)
	})
	schemasMu sync.Mutex
	schemas   = map[string]*validator.Schema{}
)

// responseSchema returns the compiled schema of the answer to method on
// path with status: nil, nil when the document has no such operation
// (a route outside it, such as /openapi.json) or lists no such status
// (the status check in TestMain reports that).
func responseSchema(method, path string, status int) (*validator.Schema, error) {
	doc, err := openAPIDoc()
	if err != nil {
		return nil, err
	}
	paths := doc.(map[string]any)["paths"].(map[string]any)
	var tmpl string
	for _, p := range templates() {
		if p.re.MatchString(path) && (tmpl == "" || strings.Count(p.tmpl, "{") < strings.Count(tmpl, "{")) { // a static segment wins, as in the router
			tmpl = p.tmpl
		}
	}
	item, _ := paths[tmpl].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		return nil, nil
	}
	if _, ok := op["responses"].(map[string]any)[strconv.Itoa(status)]; !ok {
		return nil, nil
	}
	esc := strings.NewReplacer("~", "~0", "/", "~1")
	return docSchema("openapi.json#/paths/" + esc.Replace(tmpl) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(status) + "/content/application~1json/schema")
}

// docSchema compiles the schema at ptr in openapi.json, once.
func docSchema(ptr string) (*validator.Schema, error) {
	doc, err := openAPIDoc()
	if err != nil {
		return nil, err
	}
	schemasMu.Lock()
	defer schemasMu.Unlock()
	if s, ok := schemas[ptr]; ok {
		return s, nil
	}
	c := validator.NewCompiler()
	if err := c.AddResource("openapi.json", doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(ptr)
	if err != nil {
		return nil, err
	}
	schemas[ptr] = s
	return s, nil
}

// templates are the document's paths, each with the expression its
// paths match.
var templates = sync.OnceValue(func() []pathTemplate {
	doc, err := openAPIDoc()
	if err != nil {
		return nil
	}
	param := regexp.MustCompile(`\\\{[A-Za-z]+\\\}`) // quoted by QuoteMeta
	var out []pathTemplate
	for p := range doc.(map[string]any)["paths"].(map[string]any) {
		out = append(out, pathTemplate{tmpl: p, re: regexp.MustCompile("^" + param.ReplaceAllString(regexp.QuoteMeta(p), `[^/]+`) + "$")})
	}
	return out
})

type pathTemplate struct {
	tmpl string
	re   *regexp.Regexp
}

// TestStreamChunksMatchOpenAPI: every chunk of a completion stream, the
// first (with the ids), text and tool call deltas, the finish, the usage
// and debug chunk, matches the document's ChatCompletionChunk.
func TestStreamChunksMatchOpenAPI(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		sch, err := docSchema("openapi.json#/components/schemas/ChatCompletionChunk")
		if err != nil {
			t.Fatal(err)
		}
		h.up.Enqueue(llmtest.Behavior{Reply: "Let me look.", ToolCalls: fakeCalls})
		events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions",
			map[string]any{"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools(), "debug": true}))
		if len(events) < 5 {
			t.Fatalf("a stream of %d events: %v", len(events), events)
		}
		for _, ev := range events[:len(events)-1] { // all but [DONE]
			inst, err := validator.UnmarshalJSON(strings.NewReader(ev.raw))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("the chunk does not match openapi.json: %v\n%s", err, ev.raw)
			}
		}
	})
}
