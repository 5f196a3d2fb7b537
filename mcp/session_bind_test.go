package mcp

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestStreamableSessionBelongsToItsUser checks that one user cannot cancel
// another user's call by posting notifications/cancelled with the other
// user's Mcp-Session-Id, as the SSE transport already refuses one user's
// messages in another's session.
func TestStreamableSessionBelongsToItsUser(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 0)
	post := func(ctx context.Context, user, session, body string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/mcp", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", "Bearer "+e.keys[user])
		if session != "" {
			req.Header.Set(server.HeaderKeySessionID, session)
		}
		return http.DefaultClient.Do(req)
	}
	res, err := post(context.Background(), "editor", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	must(t, err)
	res.Body.Close()
	sid := res.Header.Get(server.HeaderKeySessionID)
	if sid == "" {
		t.Fatal("initialize returned no session id")
	}

	started, canceled := e.upstream.hang()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create-chat-completion","arguments":{"aiProviderId":"` +
			e.provider.ID + `","messages":[{"role":"user","content":"wait"}]}}}`
		if res, err := post(ctx, "editor", sid, call); err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(res.Body)
			res.Body.Close()
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the request")
	}
	cancelBody := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"not yours"}}`
	res, err = post(context.Background(), "outsider", sid, cancelBody)
	must(t, err)
	res.Body.Close()
	select {
	case <-canceled:
		t.Fatal("another user's notifications/cancelled cancelled the editor's call")
	case <-time.After(500 * time.Millisecond):
	}
	res, err = post(context.Background(), "editor", sid, cancelBody)
	must(t, err)
	res.Body.Close()
	select {
	case <-canceled:
	case <-time.After(2 * time.Second):
		t.Fatal("the editor's own notifications/cancelled did not cancel its call")
	}
	<-done
}
