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

// TestResultTextCarriesWhatTheModelSees: many clients give the model a
// result's text only, so the text carries what the structured content
// does that a model acts on: a tool call's extra_content (to send back),
// the debug asked for, and, in a conversation, a reply cut short and a
// message's document.
func TestResultTextCarriesWhatTheModelSees(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat := e.supportChat()
	s := e.connect(overHTTP, "editor", Options{})

	e.upstream.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Oslo"}`,
		Extra: `{"google":{"thought_signature":"c2ln"}}`}}})
	res := s.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "debug": true, "messages": userMsg("Weather?"),
		"tools": []obj{{"type": "function", "function": obj{"name": "weather"}}}}, nil)
	if got := text(res); !strings.Contains(got, `tool call call_1: weather({"city":"Oslo"}) extra_content {"google":{"thought_signature":"c2ln"}}`) ||
		!strings.Contains(got, `{"debug":{`) {
		t.Errorf("stateless completion's text %q; want the call's extra_content and the debug", got)
	}

	e.upstream.Enqueue(llmtest.Behavior{FinishReason: "length"})
	var out completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "user", "documentId": e.document.ID}}}, &out)
	res = s.ok(t, "get-conversation", obj{"conversationId": out.ConversationID}, nil)
	if got := text(res); !strings.Contains(got, "(document "+e.document.ID+")") || !strings.Contains(got, "(finishReason length)") {
		t.Errorf("get-conversation's text %q; want the message's document and the reply's finishReason", got)
	}
}
