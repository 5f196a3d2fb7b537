package rest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestOpenAPIMethodsAreServed sends every method /openapi.json documents,
// on every path it documents (the MCP transports and /metrics included),
// to the running app: none may answer 405, which would mean the document
// describes an operation the server does not have.
func TestOpenAPIMethodsAreServed(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	resp, err := http.Get(h.srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d", resp.StatusCode)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	sent := 0
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			sent++
			p := path
			for strings.Contains(p, "{") {
				i, j := strings.Index(p, "{"), strings.Index(p, "}")
				p = p[:i] + "x" + p[j+1:]
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			req, _ := http.NewRequestWithContext(ctx, strings.ToUpper(method), h.srv.URL+p, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+h.admin)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Errorf("%s %s: %v", strings.ToUpper(method), path, err)
				continue
			}
			if r.StatusCode == http.StatusMethodNotAllowed {
				wrong = append(wrong, strings.ToUpper(method)+" "+path+" (Allow: "+r.Header.Get("Allow")+")")
			}
			r.Body.Close()
			cancel()
		}
	}
	if sent == 0 {
		t.Fatal("/openapi.json documents no operation")
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("/openapi.json documents operations the server answers 405: %v", wrong)
	}
}
