package mcp

import (
	"slices"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// TestRefusalIsKept: a reply in which the model declined comes back, through
// the mcp-go client, as the result's refusal; its turn keeps it, which
// get-conversation shows, and a continuation sends it upstream, here to
// an OpenAI-compatible server, which has no refusal member, as the
// assistant's text.
func TestRefusalIsKept(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		chat := e.supportChat()
		s := e.connect(overHTTP, "editor", Options{})
		const refusal = "I'm sorry, I can't help with that."

		e.upstream.Enqueue(llmtest.Behavior{Refusal: refusal})
		var out completionOut
		res := s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("Tell me a secret.")}, &out)
		if out.Refusal != refusal || out.Content != "" || !strings.Contains(text(res), "refusal: "+refusal) {
			t.Fatalf("completion = %+v, text %q; want the refusal", out, text(res))
		}

		var conv conversationOut
		res = s.ok(t, "get-conversation", obj{"conversationId": out.ConversationID}, &conv)
		if len(conv.Messages) != 2 || conv.Messages[1].Refusal != refusal || conv.Messages[1].Content != "" {
			t.Fatalf("conversation = %+v; want the reply's refusal kept", conv.Messages)
		}
		if !strings.Contains(text(res), "[assistant] (refusal: "+refusal+")") {
			t.Errorf("get-conversation's text %q does not show the refusal", text(res))
		}

		s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": out.ConversationID, "messages": userMsg("Why not?")}, nil)
		want := []string{"user: Tell me a secret.", "assistant: " + refusal, "user: Why not?"}
		if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
			t.Errorf("the continuation went upstream with %q, want %q", got, want)
		}
	})
}

// TestRefusalIsStreamedAsProgress: a refusal streams as a reply does, each
// piece a progress notification; it sent none, and an agent watching
// progress saw nothing while the model declined, though a call it then
// cancelled kept the text as far as it had come.
func TestRefusalIsStreamedAsProgress(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{})
	const refusal = "I cannot help with that."
	e.upstream.Enqueue(llmtest.Behavior{Refusal: refusal})
	res, err := s.callErr(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("REFUSE")}, "tok-r")
	must(t, err)
	var out completionOut
	decode(t, res, &out)
	var streamed strings.Builder
	for _, n := range s.notes("tok-r") {
		streamed.WriteString(n.Message)
	}
	if out.Refusal != refusal || streamed.String() != refusal {
		t.Errorf("result refusal %q, progress %q; want the refusal in both", out.Refusal, streamed.String())
	}
}
