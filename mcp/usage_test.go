package mcp

import (
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestEstimatedUsageIsMarked: a completion whose provider gave no token
// count is estimated, and says so in its result's usage, in the stored
// reply's and in get-usage's estimatedTokens; one the provider counted
// carries no mark.
func TestEstimatedUsageIsMarked(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "counts"}, &chat)

	e.upstream.Enqueue(llmtest.Behavior{Deltas: []string{"Hello", " there"}, Usage: &llmtest.Usage{}})
	var guessed completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("one")}, &guessed)
	if !guessed.Usage.Estimated || guessed.Usage.TotalTokens == 0 {
		t.Errorf("usage without the provider's count = %+v, want an estimate marked estimated", guessed.Usage)
	}
	var counted completionOut
	s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": guessed.ConversationID, "messages": userMsg("two")}, &counted)
	if counted.Usage.Estimated || counted.Usage.TotalTokens == 0 {
		t.Errorf("the provider's usage = %+v, want it unmarked", counted.Usage)
	}

	var c conversationOut
	s.ok(t, "get-conversation", obj{"conversationId": guessed.ConversationID}, &c)
	var marks []bool
	for _, m := range c.Messages {
		if m.Usage != nil {
			marks = append(marks, m.Usage.Estimated)
		}
	}
	if len(marks) != 2 || !marks[0] || marks[1] {
		t.Errorf("the stored replies' marks are %v, want [true false]", marks)
	}

	var u usageReportOut
	s.ok(t, "get-usage", obj{"projectId": e.project.ID}, &u)
	want := int64(guessed.Usage.TotalTokens)
	if len(u.Data) != 1 || u.Data[0].EstimatedTokens != want || u.Data[0].TotalTokens != guessed.Usage.TotalTokens+counted.Usage.TotalTokens {
		t.Errorf("get-usage = %+v, want %d of %d tokens estimated", u.Data, want, guessed.Usage.TotalTokens+counted.Usage.TotalTokens)
	}
}
