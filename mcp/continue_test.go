package mcp

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/ratelimit"
)

// heldTurns is the real store whose next AppendTurn, once armed, waits for
// release before it stores: a turn caught as it is being stored. With
// storedFirst it waits once the turn is stored, before it returns.
type heldTurns struct {
	domain.Store
	armed       atomic.Bool
	storedFirst bool
	held        chan struct{} // closed when the armed AppendTurn waits
	conv        string        // the conversation of the turn held, once held is closed
	release     chan struct{}
}

func (s *heldTurns) AppendTurn(ctx context.Context, c *domain.Conversation, create bool, msgs []domain.Message) error {
	if s.storedFirst {
		err := s.Store.AppendTurn(ctx, c, create, msgs)
		s.hold(c)
		return err
	}
	s.hold(c)
	return s.Store.AppendTurn(ctx, c, create, msgs)
}

// hold waits for release, once, when armed.
func (s *heldTurns) hold(c *domain.Conversation) {
	if s.armed.CompareAndSwap(true, false) {
		s.conv = c.ID
		close(s.held)
		<-s.release
	}
}

// TestContinuationWaitsForATurnBeingStored: a continuation that comes while
// the previous turn of its conversation is being stored (its reply is
// complete; a client that saw it, or the stream's [DONE], continues at
// once) is not refused as concurrent: it waits for that turn, and sends it
// upstream in its history. One that comes while the previous reply is
// still being generated is refused (TestConcurrentContinuations in rest).
func TestContinuationWaitsForATurnBeingStored(t *testing.T) {
	e, ht, s, chat := heldTurnChat(t)
	var first completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &first)

	ht.armed.Store(true)
	continueWith := func(msg string) <-chan *mcpgo.CallToolResult {
		return s.callLater(obj{"chatId": chat.ID, "conversationId": first.ConversationID, "messages": userMsg(msg)})
	}
	second := continueWith("two")
	waitsForHeldTurn(t, e, ht, second, func() <-chan *mcpgo.CallToolResult { return continueWith("three") })
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
	e, ht, s, chat := heldTurnChat(t)
	ht.armed.Store(true)
	first := s.callLater(obj{"chatId": chat.ID, "messages": userMsg("one")})
	waitsForHeldTurn(t, e, ht, first, func() <-chan *mcpgo.CallToolResult {
		return s.callLater(obj{"chatId": chat.ID, "conversationId": ht.conv, "messages": userMsg("two")})
	})
	want := []string{"user: one", "assistant: Hello, world!", "user: two"}
	if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
		t.Errorf("the second turn went upstream with %q, want %q", got, want)
	}
}

// TestDeletionWaitsForAFirstTurnBeingStored: a delete of the conversation
// a first turn (run here over MCP) is starting, which a REST stream names
// in its first chunk, that comes while the turn is being stored waits for
// it and then deletes the conversation (REST's DELETE calls the same
// method; while the reply is generated it is a 409,
// TestDeletingAConversationBeingStarted in rest). It answered that the
// conversation does not exist, and the turn then stored it.
func TestDeletionWaitsForAFirstTurnBeingStored(t *testing.T) {
	e, ht, s, chat := heldTurnChat(t)
	ht.armed.Store(true)
	first := s.callLater(obj{"chatId": chat.ID, "messages": userMsg("one")})
	select {
	case <-ht.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first turn was never stored")
	}
	deleted := make(chan error, 1)
	go func() { deleted <- e.svcs.Conversations.Delete(e.ctx("editor"), ht.conv) }()
	select {
	case err := <-deleted:
		close(ht.release)
		<-first
		t.Fatalf("the delete answered %v before the turn was stored; want it to wait", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(ht.release)
	if res := <-first; res.IsError {
		t.Fatalf("the first turn: %s", text(res))
	}
	if err := <-deleted; err != nil {
		t.Fatalf("the delete, once the turn was stored: %v", err)
	}
	if _, err := e.store.GetConversation(context.Background(), ht.conv); domain.KindOf(err) != domain.NotFound {
		t.Errorf("the conversation after the delete: %v, want not found", err)
	}
	if msgs, err := e.store.ListMessages(context.Background(), ht.conv); err != nil || len(msgs) != 0 {
		t.Errorf("%d messages left of the deleted conversation (%v)", len(msgs), err)
	}
}

// heldTurnChat connects the editor over stdio to a server whose store
// holds the turn it is armed for, and creates a chat.
func heldTurnChat(t *testing.T) (*env, *heldTurns, *session, chatOut) {
	t.Helper()
	ht := &heldTurns{held: make(chan struct{}), release: make(chan struct{})}
	e, s, chat := chatOver(t, func(d *domain.Deps) { ht.Store, d.Store = d.Store, ht })
	return e, ht, s, chat
}

// chatOver connects the editor over stdio to a server whose dependencies
// configure sets (a store that wraps the real one), and creates a chat.
func chatOver(t *testing.T, configure func(*domain.Deps)) (*env, *session, chatOut) {
	t.Helper()
	e := newEnv(t, dbtest.SQLite(t))
	e.configure(configure)
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "turns"}, &chat)
	return e, s, chat
}

// callLater calls create-chat-completion-for-chat in the background; its
// result comes on the channel.
func (s *session) callLater(args obj) <-chan *mcpgo.CallToolResult {
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

// waitsForHeldTurn checks that the call next starts, once the turn of the
// call held is being stored (ht holds it), waits for that turn rather
// than going upstream or being refused, and that both succeed once the
// turn is released.
func waitsForHeldTurn(t *testing.T, e *env, ht *heldTurns, held <-chan *mcpgo.CallToolResult, next func() <-chan *mcpgo.CallToolResult) {
	t.Helper()
	select {
	case <-ht.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held turn was never stored")
	}
	upstream := e.upstream.Count()
	later := next()
	time.Sleep(200 * time.Millisecond) // the later call waits for the held turn
	if n := e.upstream.Count(); n != upstream {
		t.Fatalf("the later turn went upstream before the held one was stored")
	}
	close(ht.release)
	for i, res := range []*mcpgo.CallToolResult{<-held, <-later} {
		if res.IsError {
			t.Fatalf("call %d: %s", i+1, text(res))
		}
	}
}

// TestMaxHistoryMessagesOverMCP: create-chat-completion-for-chat takes
// maxHistoryMessages and sends only the conversation's latest messages;
// create-chat-completion, which keeps no conversation, refuses it, saying
// where conversations are continued.
func TestMaxHistoryMessagesOverMCP(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "window"}, &chat)
	var first completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &first)
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": first.ConversationID, "messages": userMsg("two")}, nil)
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": first.ConversationID,
		"maxHistoryMessages": 2, "messages": userMsg("three")}, nil)
	want := []string{"user: two", "assistant: Hello, world!", "user: three"}
	if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
		t.Errorf("maxHistoryMessages 2 sent %q, want %q", got, want)
	}
	msg := s.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "maxHistoryMessages": 2, "messages": userMsg("x")}, "invalid_request")
	if !strings.Contains(msg, "takes no maxHistoryMessages") || !strings.Contains(msg, "create-chat-completion-for-chat") {
		t.Errorf("create-chat-completion with maxHistoryMessages = %q; want it to say where conversations are continued", msg)
	}
}

// gate holds the first call that passes it once armed until release.
type gate struct {
	armed   atomic.Bool
	held    chan struct{} // closed when the armed call waits
	release chan struct{}
}

func newGate() *gate { return &gate{held: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) pass() {
	if g.armed.CompareAndSwap(true, false) {
		close(g.held)
		<-g.release
	}
}

// heldHistory waits at its gate before it reads a conversation's history:
// a continuation caught while it plans.
type heldHistory struct {
	domain.Store
	*gate
}

func (s heldHistory) ListMessages(ctx context.Context, conversationID string) ([]domain.Message, error) {
	s.pass()
	return s.Store.ListMessages(ctx, conversationID)
}

// heldLimits waits at its gate before it reads a project's limits: a
// completion caught as it is admitted.
type heldLimits struct {
	domain.Store
	*gate
}

func (s heldLimits) GetLimits(ctx context.Context, projectID string) (*domain.ProjectLimits, error) {
	s.pass()
	return s.Store.GetLimits(ctx, projectID)
}

// heldChat reads a chat, then waits at its gate: a first turn caught
// between reading its chat and claiming its conversation.
type heldChat struct {
	domain.Store
	*gate
}

func (s heldChat) GetChat(ctx context.Context, id string) (*domain.Chat, error) {
	c, err := s.Store.GetChat(ctx, id)
	s.pass()
	return c, err
}

// deletedWhileHeld calls create-chat-completion-for-chat with args, runs
// del once the call waits at g, and checks that the call then fails
// saying want, without going upstream.
func deletedWhileHeld(t *testing.T, e *env, s *session, g *gate, args obj, del func() error, want string) {
	t.Helper()
	g.armed.Store(true)
	later := s.callLater(args)
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the point held")
	}
	upstream := e.upstream.Count()
	must(t, del())
	close(g.release)
	if res := <-later; !res.IsError || !strings.Contains(text(res), want) {
		t.Errorf("the call across the delete = %q; want it stopped, saying %q", text(res), want)
	}
	if n := e.upstream.Count(); n != upstream {
		t.Errorf("it went upstream (%d calls) after the delete", n-upstream)
	}
}

// TestDeleteStopsACompletionInFlight: a delete on this instance stops a
// completion at each point before it goes upstream, with the error its
// client can act on: a conversation deleted while its continuation still
// plans (it has claimed the conversation and reads its history) or is
// admitted (it reads its project's limits: not a cancellation the client
// did not ask for); a chat deleted after a first turn read it but before
// the turn claimed its conversation, where no claim could be stopped (it
// reads its chat again, and finds it gone).
func TestDeleteStopsACompletionInFlight(t *testing.T) {
	continuation := func(t *testing.T, hold func(*gate, domain.Store) domain.Store, limits bool) {
		g := newGate()
		e, s, chat := chatOver(t, func(d *domain.Deps) {
			d.Store = hold(g, d.Store)
			if limits {
				d.Limiter, d.LimitsCacheTTL = ratelimit.NewMemory(), time.Nanosecond
			}
		})
		var first completionOut
		s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &first)
		deletedWhileHeld(t, e, s, g, obj{"chatId": chat.ID, "conversationId": first.ConversationID, "messages": userMsg("two")},
			func() error { return e.svcs.Conversations.Delete(e.ctx("editor"), first.ConversationID) },
			"conversation "+first.ConversationID+" was deleted while this completion ran")
	}
	t.Run("planning", func(t *testing.T) {
		continuation(t, func(g *gate, st domain.Store) domain.Store { return heldHistory{st, g} }, false)
	})
	t.Run("admission", func(t *testing.T) {
		continuation(t, func(g *gate, st domain.Store) domain.Store { return heldLimits{st, g} }, true)
	})
	t.Run("a first turn before its claim", func(t *testing.T) {
		g := newGate()
		e, s, chat := chatOver(t, func(d *domain.Deps) { d.Store = heldChat{d.Store, g} })
		deletedWhileHeld(t, e, s, g, obj{"chatId": chat.ID, "messages": userMsg("one")},
			func() error { return e.svcs.Chats.Delete(e.ctx("editor"), chat.ID) }, "chat "+chat.ID+" does not exist")
	})
}
