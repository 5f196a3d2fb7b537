package mcp

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// TestTypeScriptSDK runs e2e/ts-mcp (the official TypeScript SDK client)
// against this package's streamable HTTP and HTTP+SSE handlers and against `parley mcp`
// over stdio, both on one seeded SQLite database with the fake upstream.
// It needs Node 20+ and `npm ci` in e2e/ts-mcp; enable it with
// PARLEY_TS_E2E=1.
func TestTypeScriptSDK(t *testing.T) {
	if os.Getenv("PARLEY_TS_E2E") != "1" {
		t.Skip("set PARLEY_TS_E2E=1 to run the TypeScript SDK end-to-end test (needs node and npm ci in e2e/ts-mcp)")
	}
	dir := filepath.Join("..", "e2e", "ts-mcp")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("run npm ci in %s first: %v", dir, err)
	}
	bin := filepath.Join(t.TempDir(), "parley")
	build := exec.Command("go", "build", "-o", bin, "../cmd/parley")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	must(t, build.Run())

	ctx := context.Background()
	data := t.TempDir()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(data, "parley.db"))
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	must(t, st.Migrate(ctx, "up", nil))
	e := newEnv(t, st) // seals provider keys under the all-zero master key
	srv := e.server(Options{})
	sse := NewSSE(srv, e.svcs.Users.Authenticate, Limits{}, "", nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", StreamableHTTPHandler(srv, e.svcs.Users.Authenticate, Limits{}, 0, nil))
	// A server whose keep-alive (100ms) is shorter than the fake's wait
	// for a request that asks it to take its time (500ms): the SDK gets
	// the answer as an event stream of comments, then the answer.
	mux.Handle("/mcp-quiet", StreamableHTTPHandler(srv, e.svcs.Users.Authenticate, Limits{}, 100*time.Millisecond, nil))
	e.upstream.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if strings.Contains(string(r.RawBody), "take your time") {
			return llmtest.Behavior{Delay: 500 * time.Millisecond}
		}
		return llmtest.Behavior{}
	})
	mux.Handle("/sse", sse.Stream)
	mux.Handle("/message", sse.Message)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = sse.Close(context.Background()) })

	cmd := exec.Command("npm", "test")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(),
		"PARLEY_MCP_URL="+hs.URL+"/mcp",
		"PARLEY_SSE_URL="+hs.URL+"/sse",
		"PARLEY_MCP_QUIET_URL="+hs.URL+"/mcp-quiet",
		"PARLEY_API_KEY="+e.keys["editor"],
		"PARLEY_PROJECT_ID="+e.project.ID,
		"PARLEY_BIN="+bin,
		"PARLEY_DATA_DIR="+data,
		"PARLEY_DATABASE_URL=",
		"PARLEY_SECRET_KEY="+base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"PARLEY_ALLOW_PRIVATE_UPSTREAMS=true",
		"PARLEY_LOG_LEVEL=warn",
	)
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm test: %v", err)
	}
}
