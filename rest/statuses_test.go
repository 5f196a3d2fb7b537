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
