package llm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// TestThoughtsBounded: the thinking remembered is bounded in entries and
// bytes, the oldest going first, and not used past its TTL.
func TestThoughtsBounded(t *testing.T) {
	var th thoughts
	now := time.Now()
	extra := thinkingContent([]thinkingBlock{{Type: "thinking", Thinking: "hmm", Signature: "s"}})
	reply := func(id string) *domain.LLMResult {
		return &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: id, Name: "f", ExtraContent: extra}}}
	}
	sentBack := func(id string) []domain.LLMMessage {
		return []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: id, Name: "f"}}}}
	}
	restored := func(id string, at time.Time) bool {
		return thinkingBlocks(th.restore("k", sentBack(id), at)[0].ToolCalls) != nil
	}
	for i := range maxThoughts + 1 {
		th.remember("k", reply(fmt.Sprint("toolu_", i)), now)
	}
	if len(th.byKey) != maxThoughts {
		t.Errorf("%d kept, want %d", len(th.byKey), maxThoughts)
	}
	if restored("toolu_0", now) || !restored("toolu_1", now) || !restored(fmt.Sprint("toolu_", maxThoughts), now) {
		t.Error("want the oldest gone, the others kept")
	}
	if restored("toolu_1", now.Add(thoughtsTTL+time.Second)) {
		t.Error("a thought past its TTL was used")
	}
	big := thinkingContent([]thinkingBlock{{Type: "thinking", Thinking: strings.Repeat("a", 900<<10), Signature: "s"}})
	for i := range 40 {
		th.remember("k", &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: fmt.Sprint("big_", i), ExtraContent: big}}}, now)
	}
	if big == nil || th.bytes > maxThoughtsBytes || !restored("big_39", now) {
		t.Errorf("%d bytes kept, want at most %d with the newest", th.bytes, maxThoughtsBytes)
	}
	if msgs := sentBack("toolu_2"); &th.restore("other key", msgs, now)[0] != &msgs[0] {
		t.Error("another key's request was changed")
	}
	// A call id longer than a request may send back is not remembered,
	// and the bytes count the keys too.
	var ids thoughts
	ids.remember("k", reply(strings.Repeat("x", maxThoughtIDLen+1)), now)
	ids.remember("k", reply("toolu_short"), now)
	if len(ids.byKey) != 1 || ids.bytes != len(thoughtKey("k", "toolu_short"))+len(extra) {
		t.Errorf("%d kept in %d bytes, want the short id's alone, its key counted", len(ids.byKey), ids.bytes)
	}
}
