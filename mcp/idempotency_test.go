package mcp

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestIdempotencyKey: create-chat-completion-for-chat called again with
// its idempotencyKey and the same arguments, through the mcp-go client,
// returns the stored turn (replayed: true) without a call upstream or a
// second turn; with other arguments, or a malformed key, it is an
// invalid_request error result that changes nothing.
func TestIdempotencyKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		chat := e.supportChat()
		s := e.connect(overHTTP, "editor", Options{})
		args := obj{"chatId": chat.ID, "messages": userMsg("Hello?"), "idempotencyKey": "0b6c7e4e-7a39-4c1a-9a3e-3b1f1f0a2d11"}

		var first, again completionOut
		s.ok(t, "create-chat-completion-for-chat", args, &first)
		calls := e.upstream.Count()
		if first.Replayed || first.Content != "Hello, world!" {
			t.Fatalf("first call = %+v", first)
		}
		res := s.ok(t, "create-chat-completion-for-chat", args, &again)
		if !again.Replayed {
			t.Errorf("the call again was not replayed: %+v", again)
		}
		again.Replayed = false
		if !reflect.DeepEqual(again, first) {
			t.Errorf("replayed %+v\nwant the first call's %+v", again, first)
		}
		if !strings.Contains(text(res), "replayed") {
			t.Errorf("the replay's text %q does not say it was replayed", text(res))
		}

		args["messages"] = userMsg("Hello!")
		if msg := s.fails(t, "create-chat-completion-for-chat", args, "invalid_request"); !strings.Contains(msg, "used for another request") {
			t.Errorf("same key, other messages: %q", msg)
		}
		args["idempotencyKey"] = "two words"
		s.fails(t, "create-chat-completion-for-chat", args, "invalid_request")
		if n := e.upstream.Count(); n != calls {
			t.Errorf("the upstream got %d calls after the first; want none", n-calls)
		}
		conv, err := e.svcs.Conversations.Get(e.ctx("admin"), first.ConversationID)
		must(t, err)
		if len(conv.Messages) != 2 {
			t.Errorf("the conversation has %d messages; want the first call's 2", len(conv.Messages))
		}
	})
}

// TestIdempotencyKeyOfATurnJustStored: a call sent again while the first is
// still finishing, its turn stored but its result not yet returned, gets
// that turn; not a conflict.
func TestIdempotencyKeyOfATurnJustStored(t *testing.T) {
	e, ht, s, chat := heldTurnChat(t)
	ht.storedFirst = true
	ht.armed.Store(true)
	args := obj{"chatId": chat.ID, "messages": userMsg("once"), "idempotencyKey": "just-stored"}
	first := s.callLater(args)
	select {
	case <-ht.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first call's turn was never stored")
	}
	var again completionOut
	s.ok(t, "create-chat-completion-for-chat", args, &again)
	close(ht.release)
	res := <-first
	if res.IsError {
		t.Fatalf("first call: %s", text(res))
	}
	var got completionOut
	decode(t, res, &got)
	if !again.Replayed || again.MessageID != got.MessageID || again.ConversationID != got.ConversationID || again.Content != got.Content {
		t.Errorf("the call again = %+v; want the first's turn %+v, replayed", again, got)
	}
	if n := e.upstream.Count(); n != 1 {
		t.Errorf("the upstream got %d calls; want 1", n)
	}
}
