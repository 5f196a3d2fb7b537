package rest_test

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
)

// usageConversations returns the conversation_id of chat's usage records
// with outcome, once the batcher wrote them.
func usageConversations(t *testing.T, h *harness, chat, outcome string) []string {
	t.Helper()
	h.app.FlushUsage()
	var ids []string
	if err := h.app.Store.DB().Raw("SELECT conversation_id FROM usage_records WHERE chat_id = ? AND outcome = ? ORDER BY created_at, id",
		chat, outcome).Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestUnstoredFirstTurnNamesNoConversation: a completion that would have
// started a conversation but whose turn could not be stored (its chat was
// deleted meanwhile) created no conversation, so its usage record names
// none, as that of a first turn the upstream failed does; it named an id
// that never existed.
func TestUnstoredFirstTurnNamesNoConversation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond})
		before := h.up.Count()
		done := make(chan *response, 1)
		go func() {
			done <- h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
		}()
		for deadline := time.Now().Add(5 * time.Second); h.up.Count() == before; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the completion did not reach the upstream within 5s")
			}
		}
		h.must(200, "DELETE", "/api/v1/chats/"+w.chat, h.admin, nil)
		if r := <-done; r.Status != 404 {
			t.Fatalf("completion = %d %s, want 404", r.Status, r.Body)
		}
		if got := usageConversations(t, h, w.chat, "error"); len(got) != 1 || got[0] != "" {
			t.Errorf("the unstored first turn's usage names conversations %q, want one record naming none", got)
		}
	})
}
