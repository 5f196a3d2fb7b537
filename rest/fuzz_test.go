package rest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/wire"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
)

// fuzzWorld is a Parley on SQLite, its upstream the fake, with
// resources the fuzzed requests name by placeholders: $J project, $A AI
// provider, $C chat, $D document, $V conversation, $U user, $K API key
// id; and $J2, $A2, $C2, $D2 for a second set that updates may change
// (completions use the first).
type fuzzWorld struct {
	url, admin string
	ids        map[string]string
	client     *http.Client
}

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	st := dbtest.SQLite(tb)
	up := llmtest.NewServer(tb) // the upstream, on loopback
	w := &fuzzWorld{admin: domain.NewAPIKeySecret(), ids: map[string]string{},
		client: &http.Client{Timeout: 20 * time.Second}}
	a, err := app.New(context.Background(), app.Config{SecretKey: secret.GenerateKey(), BootstrapAdminKey: w.admin,
		AllowPrivateUpstreams: true, Logger: slog.New(slog.DiscardHandler), RequestTimeout: 10 * time.Second,
		LLM: llm.Config{MaxRetries: -1}}, st)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(func() { srv.Close(); a.FlushUsage() })
	w.url = srv.URL
	must := func(method, path string, body string) map[string]any {
		res, status := w.do(method, path, body, "application/json")
		if status/100 != 2 {
			tb.Fatalf("%s %s = %d %s", method, path, status, res)
		}
		var m map[string]any
		if err := json.Unmarshal(res, &m); err != nil {
			tb.Fatal(err)
		}
		return m
	}
	id := func(m map[string]any) string { return m["id"].(string) }
	for _, n := range []string{"", "2"} {
		w.ids["$J"+n] = id(must("POST", "/api/v1/projects", `{"name":"p`+n+`"}`))
		w.ids["$A"+n] = id(must("POST", "/api/v1/ai-providers", `{"projectId":"`+w.ids["$J"+n]+`","name":"fake","type":"openai-compatible",`+
			`"baseUrl":"`+up.URL()+`","defaultModel":"fake-model","apiKey":"sk-fuzz-upstream-0123456789"}`))
		w.ids["$C"+n] = id(must("POST", "/api/v1/chats", `{"projectId":"`+w.ids["$J"+n]+`","aiProviderId":"`+w.ids["$A"+n]+`","name":"c","systemMessage":"s"}`))
		w.ids["$D"+n] = id(must("POST", "/api/v1/documents", `{"projectId":"`+w.ids["$J"+n]+`","name":"facts","content":"Parley stores conversations."}`))
	}
	w.ids["$V"] = must("POST", "/api/v1/chats/"+w.ids["$C"]+"/completions", `{"messages":[{"role":"user","content":"hi"}]}`)["conversationId"].(string)
	w.ids["$U"] = id(must("POST", "/api/v1/users", `{"name":"u"}`))
	w.ids["$K"] = id(must("POST", "/api/v1/users/"+w.ids["$U"]+"/api-keys", `{"name":"k"}`))
	must("PUT", "/api/v1/projects/"+w.ids["$J2"]+"/members/"+w.ids["$U"], `{"role":"viewer"}`)
	return w
}

// fill replaces the placeholders, the longer names first.
func (w *fuzzWorld) fill(s string) string {
	for _, k := range []string{"$J2", "$A2", "$C2", "$D2", "$J", "$A", "$C", "$D", "$V", "$U", "$K"} {
		s = strings.ReplaceAll(s, k, w.ids[k])
	}
	return s
}

func (w *fuzzWorld) do(method, path, body, ctype string) ([]byte, int) {
	b, status, _ := w.doHeader(method, path, body, ctype)
	return b, status
}

func (w *fuzzWorld) doHeader(method, path, body, ctype string) ([]byte, int, http.Header) {
	var rd io.Reader
	if body != "" || method != "GET" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.url+path, rd)
	if err != nil {
		return nil, -1, nil
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+w.admin)
	res, err := w.client.Do(req)
	if err != nil {
		return []byte(err.Error()), -2, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b, res.StatusCode, res.Header
}

// fuzzRoutes are the operations fuzzed: every one that reads a body or
// a query, but the deletes.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/chats/completions"},
	{"POST", "/api/v1/chats/$C/completions"},
	{"POST", "/api/v1/chat/completions"},
	{"POST", "/api/v1/chats/$C/chat/completions"},
	{"POST", "/api/v1/projects"},
	{"PATCH", "/api/v1/projects/$J2"},
	{"PUT", "/api/v1/projects/$J2/members/$U"},
	{"PUT", "/api/v1/projects/$J2/limits"},
	{"POST", "/api/v1/ai-providers"},
	{"PATCH", "/api/v1/ai-providers/$A2"},
	{"POST", "/api/v1/documents"},
	{"PATCH", "/api/v1/documents/$D2"},
	{"POST", "/api/v1/chats"},
	{"PATCH", "/api/v1/chats/$C2"},
	{"POST", "/api/v1/users"},
	{"POST", "/api/v1/users/$U/api-keys"},
	{"GET", "/api/v1/projects"},
	{"GET", "/api/v1/projects/$J/usage"},
	{"GET", "/api/v1/projects/$J/members"},
	{"GET", "/api/v1/ai-providers"},
	{"GET", "/api/v1/documents"},
	{"GET", "/api/v1/chats"},
	{"GET", "/api/v1/conversations"},
	{"GET", "/api/v1/conversations/$V/messages"},
	{"GET", "/api/v1/users"},
	{"GET", "/api/v1/users/$U/api-keys"},
	{"GET", "/api/v1/models"},
	{"GET", "/api/v1/chats/$C/models"},
}

var fuzzSeeds = []struct {
	route       int
	query, body string
}{
	{0, "", `{"aiProviderId":"$A","messages":[{"role":"user","content":"hi"}],"stream":true,"debug":true}`},
	{0, "", `{"aiProviderId":"$A","systemMessage":"x","messages":[{"role":"user","documentId":"$D"}],"dataSources":[{"id":"$D"}],"names":["facts"],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"toolChoice":"auto"}`},
	{1, "", `{"conversationId":"$V","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"maxTokens":5,"temperature":0,"stop":"x"}`},
	{1, "", `{"messages":[{"role":"assistant","toolCalls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","toolCallId":"c1","content":"r"}],"responseFormat":{"type":"json_schema","jsonSchema":{"name":"n","schema":{"type":"object"}}}}`},
	{2, "", `{"model":"$A","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream_options":{"include_usage":true},"stream":true}`},
	{3, "", `{"messages":[{"role":"user","content":"hi"}],"tool_choice":"none","response_format":{"type":"json_object"},"max_completion_tokens":9}`},
	{4, "", `{"name":"p","description":"d"}`},
	{5, "", `{"name":"q","description":null}`},
	{6, "", `{"role":"editor"}`},
	{7, "", `{"requestsPerMinute":1000,"tokensPerMinute":null,"concurrentStreams":3}`},
	{8, "", `{"projectId":"$J2","name":"a","type":"anthropic","apiKey":"sk-ant-x","promptCache":"5m"}`},
	{9, "", `{"defaultModel":"m","baseUrl":"http://127.0.0.1:18199/v1"}`},
	{10, "", `{"projectId":"$J2","name":"n","content":"c","mimeType":"text/markdown","metadata":{"a":1e400}}`},
	{11, "", `{"name":"n2","metadata":{"k":[1,2]}}`},
	{12, "", `{"projectId":"$J2","aiProviderId":"$A2","name":"c","model":"m","systemMessage":"s"}`},
	{13, "", `{"systemMessage":"t","model":null}`},
	{14, "", `{"name":"u","isAdmin":false}`},
	{15, "", `{"name":"k","expiresAt":"2030-01-01T00:00:00Z"}`},
	{16, "limit=1&cursor=", ""},
	{17, "from=2026-01-01&to=2026-02-01T00:00:00%2B02:00&groupBy=model&limit=5", ""},
	{17, "groupBy=day&cursor=dXNhZ2U6", ""},
	{18, "limit=100", ""},
	{19, "projectId=$J&limit=2", ""},
	{20, "projectId=$J&cursor=Y252Xw", ""},
	{21, "projectId=$J&limit=0", ""},
	{22, "chatId=$C&projectId=$J", ""},
	{23, "limit=1&cursor=%zz", ""},
	{24, "limit=1;x", ""},
	{25, "limit=1&limit=2", ""},
	{26, "aiProviderId=$A", ""},
	{27, "", ""},
	{0, "", `{"aiProviderId":"$A","messages":[{"role":"user","content":"hi"}]} {}`},
	{1, "", `{"messages":[{"role":"user","content":"hi"}],"maxTokens":1e-400}`},
	{1, "", `{"messages":[],"conversationId":""}`},
}

// FuzzREST drives the REST API's handlers over HTTP with any query and
// body on each operation that reads one: no answer is a 5xx, every
// refusal is the one error envelope with the code of its status, and
// every JSON answer, refusals included, is one openapi.json lists for
// its operation and status and matches its schema. A stream ends with
// [DONE] or an error event.
func FuzzREST(f *testing.F) {
	w := newFuzzWorld(f)
	for _, s := range fuzzSeeds {
		f.Add(uint8(s.route), s.query, []byte(s.body), uint8(0))
	}
	ctypes := []string{"application/json", "", "application/json; charset=utf-8", "text/plain", "application/merge-patch+json", "application/json; x"}
	f.Fuzz(func(t *testing.T, route uint8, query string, body []byte, ctype uint8) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := w.fill(r.path)
		if query != "" {
			if strings.ContainsAny(query, "#\x00\r\n ") || !utf8.ValidString(query) {
				return // not a request line net/http's client sends
			}
			path += "?" + w.fill(query)
		}
		ct := ctypes[int(ctype)%len(ctypes)]
		res, status, h := w.doHeader(r.method, path, w.fill(string(body)), ct)
		if status < 0 {
			if status == -2 {
				t.Fatalf("%s %s %q: %s", r.method, path, body, res)
			}
			return
		}
		if status >= 500 {
			t.Fatalf("%s %s %q = %d %s", r.method, path, body, status, res)
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
			checkStream(t, r.method+" "+path, body, res)
			return
		}
		if status >= 400 {
			var env struct {
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(res, &env); err != nil || env.Error == nil || env.Error.Code == "" || env.Error.Message == "" {
				t.Fatalf("%s %s %q = %d, not the error envelope: %s", r.method, path, body, status, res)
			}
			if want := codeStatus(env.Error.Code); want != status && !(status == 405 && env.Error.Code == "method_not_allowed") {
				t.Fatalf("%s %s %q = %d with code %s (%d)", r.method, path, body, status, env.Error.Code, want)
			}
		}
		if status >= 400 {
			if sch, err := responseSchema(r.method, strings.SplitN(path, "?", 2)[0], status); err == nil && sch == nil {
				t.Fatalf("%s %s %q = %d, a status openapi.json does not list for it: %s", r.method, path, body, status, res)
			}
		}
		if wrong := documented(r.method, path, status, h, res); wrong != "" {
			t.Fatalf("%q: %s", body, wrong)
		}
	})
}

// codeStatus is the status of an envelope's code.
func codeStatus(code string) int {
	for k := domain.Kind(0); k < 64; k++ {
		if k.String() == code {
			return wire.Status(k)
		}
	}
	return -1
}

// checkStream checks a completion stream ends with [DONE], or with an
// error event in the envelope.
func checkStream(t *testing.T, what string, body, res []byte) {
	t.Helper()
	var last string
	for _, line := range strings.Split(string(res), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			last = d
		}
	}
	if last == "[DONE]" {
		return
	}
	var env struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(last), &env) != nil || env.Error == nil || env.Error.Code == "" {
		t.Fatalf("%s %q: a stream that ends with neither [DONE] nor an error: %s", what, body, res)
	}
	if codeStatus(env.Error.Code) >= 500 {
		t.Fatalf("%s %q: a stream that ends with a server error: %s", what, body, res)
	}
}
