package store_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestLeanInsertStoresAsFull writes one turn by the lean INSERT (its
// messages leave the rarely used columns at their zero values) and one by
// the full INSERT (a document id makes it), and compares what SQLite
// stores in each column, type and value.
func TestLeanInsertStoresAsFull(t *testing.T) {
	s := dbtest.SQLite(t)
	w := newWorld(t, s)
	lean, full := newConversation(w.chatA), newConversation(w.chatA)
	must(t, s.AppendTurn(ctx(), lean, true, turn(lean.ID, 0, "hello")))
	msgs := turn(full.ID, 0, "hello")
	msgs[0].DocumentID, msgs[1].DocumentID = "doc", "doc"
	must(t, s.AppendTurn(ctx(), full, true, msgs))
	for _, c := range []string{"seq", "role", "content", "tool_calls", "tool_call_id", "model", "finish_reason", "prompt_tokens",
		"completion_tokens", "total_tokens", "usage_estimated", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
		"created_at", "request_key", "request_hash", "refusal"} {
		stored := func(conv string) string {
			var got string
			must(t, s.DB().Raw("SELECT group_concat(typeof("+c+") || ':' || quote("+c+"), ',') FROM (SELECT "+c+
				" FROM messages WHERE conversation_id = ? ORDER BY seq)", conv).Scan(&got).Error)
			return got
		}
		if l, f := stored(lean.ID), stored(full.ID); l != f {
			t.Errorf("%s: lean %s, full %s", c, l, f)
		}
	}
	var doc string
	must(t, s.DB().Raw("SELECT group_concat(typeof(document_id) || ':' || quote(document_id), ',') FROM messages WHERE conversation_id = ?", lean.ID).Scan(&doc).Error)
	if doc != "text:'',text:''" {
		t.Errorf("document_id: lean %s", doc)
	}
}
