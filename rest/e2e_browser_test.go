package rest_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/app"
)

// TestBrowser runs e2e/browser: Parley's TypeScript client in a real
// browser (headless Chromium, driven by playwright-core), loaded as ES
// modules by a page at another origin than Parley's, as a web app's page
// is. Parley allows the origin http://app.parley.test:PORT, not a loopback
// one (which it always allows), and Chromium maps app.parley.test and
// evil.parley.test to 127.0.0.1, so the page's origin is a name while
// every connection stays on loopback. From the allowed origin the
// client's completions run, a 429's Retry-After and X-Request-Id are
// readable, and MCP's initialize hands the page its Mcp-Session-Id; from
// evil.parley.test the browser keeps every answer from the page, and the
// provider gets none of its requests. It needs Node 20+, `npm ci` in
// e2e/browser and in clients/typescript (for tsc, when dist is not built)
// and Chromium (/usr/bin/chromium, or PARLEY_CHROMIUM); enable it with
// PARLEY_BROWSER_E2E=1 (scripts/e2e.sh does), with which a missing
// Chromium fails the test.
func TestBrowser(t *testing.T) {
	// The page's server, on loopback; its port is in the origins.
	pages := httptest.NewUnstartedServer(nil)
	t.Cleanup(pages.Close)
	port := fmt.Sprint(pages.Listener.Addr().(*net.TCPAddr).Port)
	allowed, denied := "http://app.parley.test:"+port, "http://evil.parley.test:"+port
	h, w, key := newE2E(t, "PARLEY_BROWSER_E2E", "the browser end-to-end test (needs node, npm ci in e2e/browser and Chromium)",
		func(c *app.Config) { c.AllowedOrigins = []string{allowed} })
	chromium := os.Getenv("PARLEY_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("PARLEY_BROWSER_E2E=1 needs Chromium at %s: install it (apt-get install chromium, as .ci/run does) or set PARLEY_CHROMIUM: %v", chromium, err)
	}
	dist := buildTSClient(t, filepath.Join("..", "clients", "typescript"))
	// A chat of a project that takes one request a minute, for a 429.
	limited := h.world()
	uid := h.must(200, "GET", "/api/v1/me", key, nil)["id"].(string)
	h.setRole(h.admin, limited.project, uid, "editor")
	h.must(200, "PUT", "/api/v1/projects/"+limited.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 1})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	})
	mux.Handle("GET /dist/", http.StripPrefix("/dist/", http.FileServer(http.Dir(dist))))
	// What the provider got so far, for the node tests to read before and
	// after a call (from node, not from a page).
	mux.HandleFunc("GET /upstream-requests", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, h.up.Count())
	})
	pages.Config.Handler = mux
	pages.Start()

	// The denied page's requests must reach no provider, whatever the node
	// tests made of them: checked even when they failed.
	defer func() {
		for _, r := range h.up.Requests() {
			if n := len(r.Messages); n > 0 && strings.Contains(r.Messages[n-1].Content, "evil.parley.test") {
				t.Errorf("the provider got %q from the page at %s, which Parley does not allow", r.Messages[n-1].Content, denied)
			}
		}
	}()
	npmTest(t, filepath.Join("..", "e2e", "browser"), "playwright-core",
		"PARLEY_BASE_URL="+h.srv.URL+"/api/v1",
		"PARLEY_MCP_URL="+h.srv.URL+"/mcp",
		"PARLEY_API_KEY="+key,
		"PARLEY_CHAT_ID="+w.chat,
		"PARLEY_LIMITED_CHAT_ID="+limited.chat,
		"PARLEY_ALLOWED_PAGE="+allowed+"/",
		"PARLEY_DENIED_PAGE="+denied+"/",
		"PARLEY_UPSTREAM_REQUESTS_URL="+pages.URL+"/upstream-requests",
		"PARLEY_CHROMIUM="+chromium,
	)

	// The page's turns reached the provider, the second with the first in
	// its history; the limited chat's once (its 429 did not).
	var first, second, limitedTurns int
	for _, r := range h.up.Requests() {
		n := len(r.Messages)
		if n == 0 {
			continue
		}
		var roles []string
		for _, m := range r.Messages {
			roles = append(roles, m.Role)
		}
		switch last := r.Messages[n-1].Content; {
		case last == "Hello from the browser":
			first++
		case last == "And again from the browser":
			second++
			if got := strings.Join(roles, ","); got != "system,user,assistant,user" {
				t.Errorf("the streamed turn went upstream with the roles %s, want the first turn in its history", got)
			}
		case last == "limited from the browser":
			limitedTurns++
		}
	}
	if first != 1 || second != 1 || limitedTurns != 1 {
		t.Errorf("the provider got the page's turns %d, %d times and the limited chat's %d times, want 1 each", first, second, limitedTurns)
	}
}

// browserPage loads Parley's TypeScript client, as built (dist), as ES
// modules, for the node tests to call in the page.
const browserPage = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>Parley in a browser</title><link rel="icon" href="data:,"></head>
<body>
<script type="module">
import { ParleyClient, ParleyError } from '/dist/index.js';
window.parley = { ParleyClient, ParleyError };
</script>
</body>
</html>
`

// buildTSClient builds the TypeScript client with tsc (from `npm ci`
// there) and returns its dist directory.
func buildTSClient(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript")); err != nil {
		t.Fatalf("building the TypeScript client: run npm ci in %s first: %v", dir, err)
	}
	cmd := exec.Command("npx", "tsc", "-p", ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npx tsc -p . in %s: %v\n%s", dir, err, out)
	}
	return filepath.Join(dir, "dist")
}
