package mcp

import (
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestIDOfAnotherKind: an id of another kind of resource where one kind is
// expected (the completion's messageId passed back as conversationId, a
// document's id as chatId) is still not_found, and the text says which
// kind of id was sent and which the argument takes, so that a model can
// correct the call.
func TestIDOfAnotherKind(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID}, &chat)
	var first completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &first)
	var doc documentOut
	s.ok(t, "create-document", obj{"projectId": e.project.ID, "name": "d", "content": "x"}, &doc)

	for _, tc := range []struct {
		name, tool string
		args       obj
		want       string
	}{
		{"messageId as conversationId", "create-chat-completion-for-chat",
			obj{"chatId": chat.ID, "conversationId": first.MessageID, "messages": userMsg("two")},
			"not_found: conversation " + first.MessageID + " does not exist: that is a message id; pass a conversation id (cnv_…)"},
		{"messageId to get-conversation", "get-conversation", obj{"conversationId": first.MessageID},
			"not_found: conversation " + first.MessageID + " does not exist: that is a message id; pass a conversation id (cnv_…)"},
		{"documentId as chatId", "get-chat", obj{"chatId": doc.ID},
			"not_found: chat " + doc.ID + " does not exist: that is a document id; pass a chat id (cht_…)"},
		{"projectId as chatId filter", "list-conversations", obj{"chatId": e.project.ID},
			"not_found: chat " + e.project.ID + " does not exist: that is a project id; pass a chat id (cht_…)"},
		{"chatId as projectId", "get-project", obj{"projectId": chat.ID},
			"not_found: project " + chat.ID + " does not exist: that is a chat id; pass a project id (prj_…)"},
		{"providerId as documentId", "get-document", obj{"documentId": e.provider.ID},
			"not_found: document " + e.provider.ID + " does not exist: that is an AI provider id; pass a document id (doc_…)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := s.fails(t, tc.tool, tc.args, "not_found"); msg != tc.want {
				t.Errorf("got  %q\nwant %q", msg, tc.want)
			}
		})
	}
	// A message's documentId is refused as invalid, with the same hint.
	msg := s.fails(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "user", "documentId": chat.ID}}}, "invalid_request")
	if want := "invalid_request: messages[0].documentId: document " + chat.ID + " does not exist in project " + e.project.ID +
		": that is a chat id; pass a document id (doc_…)"; msg != want {
		t.Errorf("documentId of a chat:\ngot  %q\nwant %q", msg, want)
	}
	// An id of the right kind, or a malformed one of any kind, gets no
	// hint; a name where an id goes is told it is none.
	for _, id := range []string{"cht_06h3j21pyc8h8y42nn3328e0bx", "cht_x", "doc_x"} {
		if msg := s.fails(t, "get-chat", obj{"chatId": id}, "not_found"); msg != "not_found: chat "+id+" does not exist" {
			t.Errorf("get-chat %s = %q", id, msg)
		}
	}
	if msg, want := s.fails(t, "get-chat", obj{"chatId": "Support"}, "not_found"), "not_found: chat Support does not exist: that is not an id; pass a chat id (cht_…)"; msg != want {
		t.Errorf("get-chat of a name:\ngot  %q\nwant %q", msg, want)
	}
	// One copied with its quotes, or upper-cased, is told how it goes.
	for _, id := range []string{strings.ToUpper(chat.ID), ` "` + chat.ID + `"`} {
		if msg, want := s.fails(t, "get-chat", obj{"chatId": id}, "not_found"), "not_found: chat "+id+" does not exist: ids are lower case, without spaces or quotes; pass "+chat.ID; msg != want {
			t.Errorf("get-chat %q:\ngot  %q\nwant %q", id, msg, want)
		}
	}
}

// TestProviderRefusalNamesItsParameter: a provider's 400 that names the
// parameter it refused says so in the tool result, as REST's
// error.details.upstreamParam does, so that an agent can drop or fix it.
func TestProviderRefusalNamesItsParameter(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	e.upstream.Enqueue(llmtest.Behavior{Status: 400, Body: `{"error":{"message":"Unsupported parameter.","type":"invalid_request_error","param":"temperature"}}`})
	msg := s.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x"), "temperature": 0.5}, "invalid_request")
	if !strings.Contains(msg, `(the provider named the parameter "temperature")`) {
		t.Errorf("the result = %q, want it to name the parameter", msg)
	}
}
