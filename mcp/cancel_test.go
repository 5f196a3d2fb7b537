package mcp

import (
	"context"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestCancelledCallGetsNoResponse: a call the client cancels with
// notifications/cancelled, keeping its request open (as the TypeScript
// SDK's client does over every transport, and mcp-go's over stdio), gets no
// response, as the protocol asks of the receiver: the upstream call is
// cancelled and its usage recorded as client_disconnect, the client reads
// no response for that id, and the session's next call works. Over
// streamable HTTP the call's request ends, without a response.
func TestCancelledCallGetsNoResponse(t *testing.T) {
	for _, over := range []string{overHTTPLegacy, overSSE, overStdio} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			s := e.connect(over, "editor", Options{})
			tr := s.GetTransport()
			before := e.disconnects()
			started, canceled := e.upstream.hang()

			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				params := obj{"name": "create-chat-completion", "arguments": cancelArgs(e)}
				_, _ = tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcpgo.JSONRPC_VERSION,
					ID: mcpgo.NewRequestId("cancel-me"), Method: string(mcpgo.MethodToolsCall), Params: params})
			}()
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream never got the request")
			}
			cancel := mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION, Notification: mcpgo.Notification{
				Method: string(mcpgo.MethodNotificationCancelled),
				Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": "cancel-me", "reason": "the user stopped it"}},
			}}
			must(t, tr.SendNotification(context.Background(), cancel))
			select {
			case <-canceled:
			case <-time.After(time.Second):
				t.Fatal("the upstream request was not cancelled within a second")
			}
			for deadline := time.Now().Add(5 * time.Second); e.disconnects() == before && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := e.disconnects(); got != before+1 {
				t.Errorf("usage records with the outcome client_disconnect: %d, want %d", got, before+1)
			}
			if over == overHTTPLegacy {
				select {
				case <-ended:
				case <-time.After(5 * time.Second):
					t.Fatal("the cancelled call's HTTP request did not end")
				}
			}

			// The usage was recorded as the cancelled call ended, just
			// before mcp-go answers it: an answer would reach the client
			// before the next call's.
			e.upstream.reply("still ", "here")
			var out completionOut
			s.ok(t, "create-chat-completion", cancelArgs(e), &out)
			if out.Content != "still here" {
				t.Errorf("the next call's reply = %q, want %q", out.Content, "still here")
			}
			if r, ok := s.wire.response("cancel-me"); ok {
				t.Errorf("the client received a response to the call it cancelled: %s", r)
			}
		})
	}
}
