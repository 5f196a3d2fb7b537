package mcp

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestBehindSameHostProxy checks that MCP over HTTP answers requests that a
// reverse proxy on the same host forwards to Parley's loopback address with
// the public Host header (Caddy's and Traefik's default, nginx's with
// proxy_set_header Host $host), as the REST API does. Every request is
// authenticated by its bearer key, so mcp-go's DNS rebinding protection,
// meant for servers without authentication, only breaks such deployments.
func TestBehindSameHostProxy(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 0) // listens on 127.0.0.1
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
		{"GET", "/sse", ""},
	} {
		req, err := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
		must(t, err)
		req.Host = "parley.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		var b []byte
		if tc.method == "POST" {
			b, _ = io.ReadAll(res.Body)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s %s with Host parley.example.com: %d %s, want 200", tc.method, tc.path, res.StatusCode, b)
		}
	}
}
