package rest_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
)

// TestMain runs the package's tests, then checks every error status their
// servers answered against openapi.json: a route that answered one its
// operation does not list fails the run, since a client generated from the
// document, or a reader of it, trusts that list. Documented error statuses
// that no test produced are reported (with -v, when every test ran).
func TestMain(m *testing.M) {
	code := m.Run()
	doc, err := os.ReadFile("openapi.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading openapi.json:", err)
		os.Exit(1)
	}
	undocumented, unproduced, err := checkStatuses(doc, answered.all())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(undocumented) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: routes answered %d error statuses that openapi.json does not list for them; "+
			"where the answer is right, add it to the route's errors in apiRoutes (openapi_test.go) and run UPDATE_OPENAPI=1 go test ./rest -run OpenAPI:\n", len(undocumented))
		for _, u := range undocumented {
			fmt.Fprintln(os.Stderr, "\t"+u)
		}
		code = 1
	}
	if testing.Verbose() && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		fmt.Printf("openapi.json lists %d error statuses that no test produced:\n", len(unproduced))
		for _, u := range unproduced {
			fmt.Println("\t" + u)
		}
	}
	os.Exit(code)
}

// answer is a status a route answered a method with. Route is the
// template as the router has it (/api/v1/chats/:chatId).
type answer struct {
	method, route string
	status        int
}

// answers collects what the servers of this package's tests answered, with
// the first test that saw each, for the check in TestMain.
type answers struct {
	mu    sync.Mutex
	first map[answer]string
}

var answered answers

func (a *answers) add(ans answer, test string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.first == nil {
		a.first = map[answer]string{}
	}
	if _, ok := a.first[ans]; !ok {
		a.first[ans] = test
	}
}

func (a *answers) all() map[answer]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[answer]string, len(a.first))
	for k, v := range a.first {
		out[k] = v
	}
	return out
}

// requestSeries matches a series of parley_http_requests_total, which the
// server counts for every response by method, route template and status.
var (
	requestSeries = regexp.MustCompile(`^parley_http_requests_total\{(.*)\} `)
	metricLabel   = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// recordAnswers adds what h's server answered to answered. It reads the
// server's own count of its responses (GET /metrics) rather than wrapping
// its handler, since only the router knows which route a request took;
// call it once the server is closed, which waits for every handler (each
// counts its response after sending it).
func (h *harness) recordAnswers() {
	rec := httptest.NewRecorder()
	h.app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		h.t.Errorf("GET /metrics = %d; the answers of this test's server are not checked against openapi.json", rec.Code)
		return
	}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		m := requestSeries.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range metricLabel.FindAllStringSubmatch(m[1], -1) {
			labels[l[1]] = l[2]
		}
		status, err := strconv.Atoi(labels["status"])
		if err != nil {
			h.t.Errorf("parley_http_requests_total has status %q", labels["status"])
			continue
		}
		answered.add(answer{method: labels["method"], route: labels["route"], status: status}, h.t.Name())
	}
}

// routeParam is a path parameter as the router writes it.
var routeParam = regexp.MustCompile(`:([A-Za-z]+)`)

// checkStatuses returns the error statuses in got that doc does not list
// for their operation, and those doc lists that got does not hold. Left
// out of the check, as no operation can list them:
//   - 405, the answer to a method a path does not have (an operation is a
//     method a path has), which a parameter's route also gives a static
//     path it shadows (GET /chats/completions reaches GET /chats/:chatId);
//   - 499, the status logged for a request whose client left, which nobody
//     receives;
//   - requests that matched no route, and operations the document does not
//     describe at all (TestOpenAPI checks that it has every API route).
//
// HEAD is checked as the GET it goes with.
func checkStatuses(doc []byte, got map[answer]string) (undocumented, unproduced []string, err error) {
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, nil, fmt.Errorf("openapi.json: %w", err)
	}
	seen := map[string]bool{}
	for a, test := range got {
		if a.status < 400 || a.status == http.StatusMethodNotAllowed || a.status == 499 {
			continue
		}
		method := strings.ToLower(a.method)
		if method == "head" {
			method = "get"
		}
		path := routeParam.ReplaceAllString(a.route, "{$1}")
		op, ok := d.Paths[path][method]
		if !ok {
			continue
		}
		code := strconv.Itoa(a.status)
		seen[method+" "+path+" "+code] = true
		if _, ok := op.Responses[code]; !ok {
			undocumented = append(undocumented, fmt.Sprintf("%s %s answered %d (first in %s)", strings.ToUpper(method), path, a.status, test))
		}
	}
	for path, item := range d.Paths {
		for method, op := range item {
			for code := range op.Responses {
				if code >= "400" && !seen[method+" "+path+" "+code] {
					unproduced = append(unproduced, fmt.Sprintf("%s %s %s", strings.ToUpper(method), path, code))
				}
			}
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unproduced)
	return undocumented, unproduced, nil
}

// TestCheckStatuses: the check TestMain makes finds an error status an
// operation does not list, and reports one that no answer produced.
func TestCheckStatuses(t *testing.T) {
	doc := []byte(`{"paths": {
		"/api/v1/chats/{chatId}": {"get": {"responses": {"200": {}, "404": {}, "503": {}}}},
		"/readyz": {"get": {"responses": {"200": {}}}}
	}}`)
	got := map[answer]string{
		{"GET", "/api/v1/chats/:chatId", 200}:  "T",
		{"HEAD", "/api/v1/chats/:chatId", 404}: "T",
		{"GET", "/api/v1/chats/:chatId", 403}:  "TestX",
		{"GET", "/api/v1/chats/:chatId", 405}:  "T", // GET /chats/completions
		{"GET", "/readyz", 499}:                "T",
		{"GET", "unmatched", 404}:              "T",
		{"PUT", "/readyz", 500}:                "T", // not an operation of the document
	}
	undocumented, unproduced, err := checkStatuses(doc, got)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"GET /api/v1/chats/{chatId} answered 403 (first in TestX)"}; !slices.Equal(undocumented, want) {
		t.Errorf("undocumented = %q, want %q", undocumented, want)
	}
	if want := []string{"GET /api/v1/chats/{chatId} 503"}; !slices.Equal(unproduced, want) {
		t.Errorf("unproduced = %q, want %q", unproduced, want)
	}
}

// docOperation is an operation of openapi.json, for the tests below that
// ask each operation for the error statuses it shares with others.
type docOperation struct {
	method, path string // the path as documented, with {parameters}
	responses    map[string]json.RawMessage
	body         bool     // it takes a request body
	query        []string // its query parameters
}

// lists reports whether o documents status.
func (o docOperation) lists(status int) bool {
	_, ok := o.responses[strconv.Itoa(status)]
	return ok
}

// url is o's path with each parameter replaced by fill's value for it.
func (o docOperation) url(fill func(param string) string) string {
	return pathParam.ReplaceAllStringFunc(o.path, func(p string) string { return fill(p[1 : len(p)-1]) })
}

var pathParam = regexp.MustCompile(`\{[A-Za-z]+\}`)

// docOperations returns the operations of the document h's server serves.
func docOperations(t *testing.T, h *harness) []docOperation {
	t.Helper()
	r := h.call("GET", "/openapi.json", "", nil)
	if r.Status != 200 {
		t.Fatalf("GET /openapi.json = %d %s", r.Status, r.Body)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Parameters  []struct{ Name, In string } `json:"parameters"`
			RequestBody json.RawMessage             `json:"requestBody"`
			Responses   map[string]json.RawMessage  `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	var ops []docOperation
	for path, item := range d.Paths {
		for method, op := range item {
			o := docOperation{method: strings.ToUpper(method), path: path, responses: op.Responses, body: op.RequestBody != nil}
			for _, p := range op.Parameters {
				if p.In == "query" {
					o.query = append(o.query, p.Name)
				}
			}
			ops = append(ops, o)
		}
	}
	if len(ops) == 0 {
		t.Fatal("/openapi.json documents no operation")
	}
	slices.SortFunc(ops, func(a, b docOperation) int { return strings.Compare(a.path+" "+a.method, b.path+" "+b.method) })
	return ops
}

// anyID stands for every path parameter where the answer comes before the
// parameter is looked at.
func anyID(string) string { return "x" }

// TestEveryOperationAnswers401: every operation that lists 401 answers it
// in the error envelope, with a challenge, to a request without a key and
// to one with a key that does not exist.
func TestEveryOperationAnswers401(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		n := 0
		for _, o := range docOperations(t, h) {
			if !o.lists(401) {
				continue
			}
			n++
			var body any
			if o.body {
				body = "{}"
			}
			for _, key := range []string{"", domain.NewAPIKeySecret()} {
				r := h.call(o.method, o.url(anyID), key, body)
				if r.Status != 401 || r.ErrorCode() != "unauthenticated" || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("%s %s with key %q = %d %s (WWW-Authenticate %q), want 401 unauthenticated", o.method, o.path, key, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
				}
			}
		}
		if n == 0 {
			t.Fatal("no operation lists 401")
		}
	})
}

// TestEveryBodyOverTheLimitIs413: every operation that takes a body lists
// 413, and every one that lists it (the MCP transports too) refuses a body
// over PARLEY_MAX_BODY_BYTES with it.
func TestEveryBodyOverTheLimitIs413(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.MaxBodyBytes = 1024 })
	body := `{"name": "` + strings.Repeat("x", 2048) + `"}`
	n := 0
	for _, o := range docOperations(t, h) {
		if o.body && !o.lists(413) {
			t.Errorf("%s %s takes a body but does not list 413", o.method, o.path)
		}
		if !o.lists(413) {
			continue
		}
		n++
		r := h.call(o.method, o.url(anyID), h.admin, body)
		if r.Status != 413 || r.ErrorCode() != "payload_too_large" {
			t.Errorf("%s %s with a body over the limit = %d %s, want 413 payload_too_large", o.method, o.path, r.Status, r.Body)
		}
	}
	if n == 0 {
		t.Fatal("no operation lists 413")
	}
}

// TestEveryListRefusesABadLimit: every operation that takes limit lists
// 400, and answers it, naming the field, to a limit out of range.
func TestEveryListRefusesABadLimit(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	n := 0
	for _, o := range docOperations(t, h) {
		if !slices.Contains(o.query, "limit") {
			continue
		}
		n++
		if !o.lists(400) {
			t.Errorf("%s %s takes limit but does not list 400", o.method, o.path)
		}
		r := h.call(o.method, o.url(anyID)+"?limit=0", h.admin, nil)
		if r.Status != 400 || r.ErrorField() != "limit" {
			t.Errorf("%s %s?limit=0 = %d %s, want 400 naming limit", o.method, o.path, r.Status, r.Body)
		}
	}
	if n == 0 {
		t.Fatal("no operation takes limit")
	}
}

// TestEmptyIDInThePathIs400: the router matches an empty parameter before
// a path's last segment (/users//api-keys), and the answer is a 400 that
// says the id is empty; every operation with such a parameter lists it.
func TestEmptyIDInThePathIs400(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		_, user := h.user("plain") // a member of no project: the answer does not depend on the caller
		n := 0
		for _, o := range docOperations(t, h) {
			first := pathParam.FindStringIndex(o.path)
			if first == nil || !strings.Contains(o.path[first[1]:], "/") {
				continue
			}
			n++
			if !o.lists(400) {
				t.Errorf("%s %s does not list 400", o.method, o.path)
			}
			var body any
			if o.body {
				body = "{}"
			}
			path := o.path[:first[0]] + o.path[first[1]:]
			path = pathParam.ReplaceAllString(path, "x")
			for _, key := range []string{h.admin, user} {
				r := h.call(o.method, path, key, body)
				if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "id is empty") {
					t.Errorf("%s %s as %s = %d %s, want 400 saying the id is empty", o.method, path, map[bool]string{true: "admin", false: "a user"}[key == h.admin], r.Status, r.Body)
				}
			}
		}
		if n == 0 {
			t.Fatal("no operation has a parameter before its last segment")
		}
	})
}

// TestEveryOperationAnswers503WithTheDatabaseDown: with the database gone,
// every operation that lists 503 answers it: the API's and MCP's because
// the key is checked in the database (this one is in no cache), /readyz
// because it asks the database.
func TestEveryOperationAnswers503WithTheDatabaseDown(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, func(c *app.Config) { c.RequestTimeout = 2 * time.Second })
	ops := docOperations(t, h)
	p.Down()
	key := domain.NewAPIKeySecret()
	n := 0
	for _, o := range ops {
		if !o.lists(503) {
			continue
		}
		n++
		var body any
		if o.body {
			body = "{}"
		}
		r := h.call(o.method, o.url(anyID), key, body)
		if r.Status != 503 || r.ErrorCode() != "unavailable" {
			t.Errorf("%s %s with the database down = %d %s, want 503 unavailable", o.method, o.path, r.Status, r.Body)
		}
	}
	if n == 0 {
		t.Fatal("no operation lists 503")
	}
}

// TestMCPTransportRefusals: the MCP transports' refusals that openapi.json
// lists and no client session meets: a body that is not JSON-RPC, a call
// without a session (400, as the protocol asks), and a message to an SSE
// session that is not open.
func TestMCPTransportRefusals(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	call := `{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}`
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/mcp", "not json", 400},
		{"/mcp", call, 400},
		{"/message", call, 400},
		{"/message?sessionId=0123456789abcdef0123456789abcdef", call, 404},
	} {
		if r := h.call("POST", c.path, h.admin, c.body); r.Status != c.want {
			t.Errorf("POST %s %s = %d %s, want %d", c.path, c.body, r.Status, r.Body, c.want)
		}
	}
}

// TestEmptyIDFilterIs400: a list's id filter sent empty (?projectId=, a
// client's unset variable) is a 400 naming it, whoever asks, rather than the
// list without that filter, which would look like the filtered one (every
// project's chats, for an admin). Every list with such a filter refuses it.
func TestEmptyIDFilterIs400(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		h.world()
		_, user := h.user("plain")
		n := 0
		for _, o := range docOperations(t, h) {
			for _, q := range o.query {
				if !strings.HasSuffix(q, "Id") {
					continue
				}
				n++
				if !o.lists(400) {
					t.Errorf("%s %s takes %s but does not list 400", o.method, o.path, q)
				}
				for _, key := range []string{h.admin, user} {
					r := h.call(o.method, o.url(anyID)+"?"+q+"=", key, nil)
					if r.Status != 400 || r.ErrorField() != q || !strings.Contains(r.ErrorMessage(), q+" is empty") {
						t.Errorf("%s %s?%s= = %d %s, want 400 naming %s", o.method, o.path, q, r.Status, r.Body, q)
					}
				}
			}
		}
		if n == 0 {
			t.Fatal("no operation takes an id filter")
		}
	})
}

// TestEveryNullBodyIs400: a body of JSON null, where every operation takes
// an object, is a 400 saying so, as [] is: not a PATCH that answers 200
// having changed nothing, nor a PUT of limits that reads it as {} and
// lifts them all.
func TestEveryNullBodyIs400(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 60})
		ids := func(param string) string {
			switch param {
			case "projectId":
				return w.project
			case "chatId":
				return w.chat
			case "providerId":
				return w.provider
			}
			return "x"
		}
		n := 0
		for _, o := range docOperations(t, h) {
			if !o.body || !strings.HasPrefix(o.path, "/api/v1/") {
				continue
			}
			n++
			r := h.call(o.method, o.url(ids), h.admin, "null")
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "must be a JSON object") {
				t.Errorf("%s %s with the body null = %d %s, want 400", o.method, o.path, r.Status, r.Body)
			}
		}
		if n == 0 {
			t.Fatal("no operation takes a body")
		}
		if got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/limits", h.admin, nil)["requestsPerMinute"]; got != 60.0 {
			t.Errorf("after a PUT of null, requestsPerMinute = %v, want 60 as before", got)
		}
	})
}
