package rest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// harness is a running Parley over real HTTP, on a fresh database, with a
// fake upstream that speaks the OpenAI wire protocol.
type harness struct {
	t     *testing.T
	srv   *httptest.Server
	up    *llmtest.Server
	app   *app.App
	admin string
	logs  *logtest.Buffer
}

// each runs body on SQLite and on PostgreSQL, each with its own harness.
func each(t *testing.T, body func(t *testing.T, h *harness)) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		body(t, newHarness(t, st, nil))
	})
}

func newHarness(t *testing.T, st *store.Store, configure func(*app.Config)) *harness {
	t.Helper()
	h := &harness{t: t, up: llmtest.NewServer(t), admin: domain.NewAPIKeySecret(), logs: &logtest.Buffer{}}
	cfg := app.Config{
		SecretKey:             secret.GenerateKey(),
		BootstrapAdminKey:     h.admin,
		AllowPrivateUpstreams: true,
		Logger:                slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Retries after 10 ms, 20 ms (200 ms, 400 ms by default): the
		// backoff's own tests are llm's, and the tests here retry often.
		LLM: llm.Config{RetryBaseDelay: 10 * time.Millisecond},
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := app.New(context.Background(), cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	h.app = a
	h.srv = httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		h.recordAnswers() // for TestMain's check against openapi.json
		a.FlushUsage()
	})
	return h
}

// finalLogs closes the server, which waits for every handler to return,
// and returns the logs: a JSON response leaves before its access-log line
// is written (see sendingSerializer), so a test that reads the logs right
// after a response could miss that line.
func (h *harness) finalLogs() string {
	h.srv.Close()
	return h.logs.String()
}

// response is an HTTP response with its body read.
type response struct {
	t      *testing.T
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as an object.
func (r *response) JSON() map[string]any {
	r.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		r.t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// ErrorCode returns error.code of an error envelope.
func (r *response) ErrorCode() string {
	r.t.Helper()
	e, _ := r.JSON()["error"].(map[string]any)
	if e == nil {
		r.t.Fatalf("no error envelope in %d response: %s", r.Status, r.Body)
	}
	code, _ := e["code"].(string)
	return code
}

// ErrorMessage returns error.message of an error envelope.
func (r *response) ErrorMessage() string {
	e, _ := r.JSON()["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// ErrorField returns error.details.field of an error envelope.
func (r *response) ErrorField() string {
	e, _ := r.JSON()["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	field, _ := d["field"].(string)
	return field
}

// call sends body (a string is sent raw, anything else as JSON) with key.
func (h *harness) call(method, path, key string, body any) *response {
	h.t.Helper()
	r, err := h.send(method, path, key, body)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// testClient sends call's and send's requests; a server that does not answer
// within its timeout fails the call instead of hanging the test.
var testClient = &http.Client{Timeout: 30 * time.Second}

// send is call returning its error, for goroutines other than the test's.
func (h *harness) send(method, path, key string, body any) (*response, error) {
	return h.sendWith(method, path, key, nil, body)
}

// sendWith is send with more request headers.
func (h *harness) sendWith(method, path, key string, header http.Header, body any) (*response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := testClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if wrong := documented(method, path, res.StatusCode, res.Header, b); wrong != "" {
		h.t.Error(wrong)
	}
	return &response{t: h.t, Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// must sends a request and fails the test unless the status is want.
func (h *harness) must(want int, method, path, key string, body any) map[string]any {
	h.t.Helper()
	r := h.call(method, path, key, body)
	if r.Status != want {
		h.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r.JSON()
}

// user creates a user with a key, returning both.
func (h *harness) user(name string) (id, key string) {
	h.t.Helper()
	u := h.must(201, "POST", "/api/v1/users", h.admin, map[string]any{"name": name})
	id = u["id"].(string)
	k := h.must(201, "POST", "/api/v1/users/"+id+"/api-keys", h.admin, map[string]any{"name": "test"})
	return id, k["key"].(string)
}

func (h *harness) project(key, name string) string {
	h.t.Helper()
	return h.must(201, "POST", "/api/v1/projects", key, map[string]any{"name": name})["id"].(string)
}

// upstreamKey is the provider key the fake upstream must receive.
const upstreamKey = "sk-test-upstream-secret-0123456789"

func (h *harness) provider(key, projectID string) string {
	h.t.Helper()
	return h.must(201, "POST", "/api/v1/ai-providers", key, map[string]any{
		"projectId": projectID, "name": "fake", "type": "openai-compatible", "baseUrl": h.up.URL(),
		"defaultModel": "fake-default", "apiKey": upstreamKey,
	})["id"].(string)
}

func (h *harness) chat(key, projectID, providerID string, extra map[string]any) string {
	h.t.Helper()
	body := map[string]any{"projectId": projectID, "aiProviderId": providerID, "name": "c"}
	for k, v := range extra {
		body[k] = v
	}
	return h.must(201, "POST", "/api/v1/chats", key, body)["id"].(string)
}

func (h *harness) setRole(ownerKey, projectID, userID, role string) {
	h.t.Helper()
	h.must(200, "PUT", fmt.Sprintf("/api/v1/projects/%s/members/%s", projectID, userID), ownerKey, map[string]any{"role": role})
}

// world is a project with a provider and a chat, owned by the admin.
type world struct {
	project, provider, chat string
}

func (h *harness) world() world {
	h.t.Helper()
	p := h.project(h.admin, "p")
	prov := h.provider(h.admin, p)
	return world{project: p, provider: prov, chat: h.chat(h.admin, p, prov, map[string]any{"systemMessage": "You are a test."})}
}

// refusedByBoth posts body to w's per-chat completions and, with w's
// provider, to the stateless ones: each must answer 400 invalid_request
// naming field, and neither may reach the upstream.
func (h *harness) refusedByBoth(t *testing.T, w world, body map[string]any, field string) {
	t.Helper()
	before := h.up.Count()
	stateless := maps.Clone(body)
	stateless["aiProviderId"] = w.provider
	for path, body := range map[string]map[string]any{
		"/api/v1/chats/" + w.chat + "/completions": body,
		"/api/v1/chats/completions":                stateless,
	} {
		r := h.call("POST", path, h.admin, body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" {
			t.Fatalf("POST %s = %d %s, want 400", path, r.Status, r.Body)
		}
		details, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
		if details["field"] != field {
			t.Errorf("POST %s: details.field = %v, want %q (%s)", path, details["field"], field, r.ErrorMessage())
		}
	}
	if h.up.Count() != before {
		t.Error("a refused request reached the upstream")
	}
}

func userMessage(s string) map[string]any { return map[string]any{"role": "user", "content": s} }

// lastUpstreamBody is the JSON body of the fake upstream's last request.
func lastUpstreamBody(t *testing.T, h *harness) map[string]any {
	t.Helper()
	r := h.up.Last()
	if r.Body == nil {
		t.Fatal("the upstream received no request")
	}
	return r.Body
}

func lastUpstreamHeader(t *testing.T, h *harness) http.Header {
	t.Helper()
	return h.up.Last().Header
}

// lastUpstreamStreamed reports whether the last upstream call streamed and
// asked for usage in the stream.
func lastUpstreamStreamed(t *testing.T, h *harness) bool {
	t.Helper()
	opts, _ := lastUpstreamBody(t, h)["stream_options"].(map[string]any)
	return h.up.Last().Stream && opts["include_usage"] == true
}
