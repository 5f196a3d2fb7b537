package mcp

import (
	"reflect"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
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
		chat, err := e.svcs.Chats.Create(e.ctx("admin"), domain.ChatCreate{ProjectID: e.project.ID, AIProviderID: e.provider.ID, Name: "support"})
		must(t, err)
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
