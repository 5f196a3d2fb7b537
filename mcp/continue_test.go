package mcp

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
)

// heldTurns is the real store whose next AppendTurn, once armed, waits for
// release before it stores: a turn caught as it is being stored.
type heldTurns struct {
	domain.Store
	armed   atomic.Bool
	held    chan struct{} // closed when the armed AppendTurn waits
	conv    string        // the conversation of the turn held, once held is closed
	release chan struct{}
}

func (s *heldTurns) AppendTurn(ctx context.Context, c *domain.Conversation, create bool, msgs []domain.Message) error {
	if s.armed.CompareAndSwap(true, false) {
		s.conv = c.ID
		close(s.held)
		<-s.release
	}
	return s.Store.AppendTurn(ctx, c, create, msgs)
}

// TestContinuationWaitsForATurnBeingStored: a continuation that comes while
// the previous turn of its conversation is being stored (its reply is
// complete; a client that saw it, or the stream's [DONE], continues at
// once) is not refused as concurrent: it waits for that turn, and sends it
// upstream in its history. One that comes while the previous reply is
// still being generated is refused (TestConcurrentContinuations in rest).
func TestContinuationWaitsForATurnBeingStored(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	ht := &heldTurns{Store: e.store, held: make(chan struct{}), release: make(chan struct{})}
	e.configure(func(d *domain.Deps) { d.Store = ht })
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "turns"}, &chat)
	var first completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &first)

	ht.armed.Store(true)
	// continueWith calls the tool in the background; its result comes on
	// the channel.
	continueWith := func(msg string) <-chan *mcpgo.CallToolResult {
		ch := make(chan *mcpgo.CallToolResult, 1)
		go func() {
			res, err := s.callCtx(context.Background(), "create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "conversationId": first.ConversationID, "messages": userMsg(msg)}, nil)
			if err != nil {
				res = mcpgo.NewToolResultError("protocol error: " + err.Error())
			}
			ch <- res
		}()
		return ch
	}
	second := continueWith("two")
	select {
	case <-ht.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the second turn was never stored")
	}
	upstream := e.upstream.Count()
	third := continueWith("three")
	time.Sleep(200 * time.Millisecond) // the third call waits for the second's turn
	if n := e.upstream.Count(); n != upstream {
		t.Fatalf("the third turn went upstream before the second was stored")
	}
	close(ht.release)
	for i, res := range []*mcpgo.CallToolResult{<-second, <-third} {
		if res.IsError {
			t.Fatalf("turn %d: %s", i+2, text(res))
		}
	}
	want := []string{"user: one", "assistant: Hello, world!", "user: two", "assistant: Hello, world!", "user: three"}
	if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
		t.Errorf("the third turn went upstream with %q, want %q", got, want)
	}
}

// TestContinuationWaitsForAFirstTurnBeingStored: a first turn's
// conversation is stored with the turn, but a REST stream names it in its
// first chunk, so a continuation of it can come while that turn is being
// stored (the client stopped the stream and sent its next message at
// once). It waits for the turn, as for a conversation already stored,
// and sends it upstream in its history; it was answered that the
// conversation does not exist.
func TestContinuationWaitsForAFirstTurnBeingStored(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	ht := &heldTurns{Store: e.store, held: make(chan struct{}), release: make(chan struct{})}
	e.configure(func(d *domain.Deps) { d.Store = ht })
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "turns"}, &chat)

	ht.armed.Store(true)
	call := func(args obj) <-chan *mcpgo.CallToolResult {
		ch := make(chan *mcpgo.CallToolResult, 1)
		go func() {
			res, err := s.callCtx(context.Background(), "create-chat-completion-for-chat", args, nil)
			if err != nil {
				res = mcpgo.NewToolResultError("protocol error: " + err.Error())
			}
			ch <- res
		}()
		return ch
	}
	first := call(obj{"chatId": chat.ID, "messages": userMsg("one")})
	select {
	case <-ht.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first turn was never stored")
	}
	upstream := e.upstream.Count()
	second := call(obj{"chatId": chat.ID, "conversationId": ht.conv, "messages": userMsg("two")})
	time.Sleep(200 * time.Millisecond) // the second call waits for the first's turn
	if n := e.upstream.Count(); n != upstream {
		t.Fatalf("the second turn went upstream before the first was stored")
	}
	close(ht.release)
	for i, res := range []*mcpgo.CallToolResult{<-first, <-second} {
		if res.IsError {
			t.Fatalf("turn %d: %s", i+1, text(res))
		}
	}
	want := []string{"user: one", "assistant: Hello, world!", "user: two"}
	if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
		t.Errorf("the second turn went upstream with %q, want %q", got, want)
	}
}
