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
		return thinkingBlocks(th.restore("k", "", domain.AnthropicExtra, sentBack(id), at)[0].ToolCalls) != nil
	}
	for i := range maxThoughts + 1 {
		th.remember("k", "", domain.AnthropicExtra, reply(fmt.Sprint("toolu_", i)), now)
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
		th.remember("k", "", domain.AnthropicExtra, &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: fmt.Sprint("big_", i), Name: "f", ExtraContent: big}}}, now)
	}
	if big == nil || th.bytes > maxThoughtsBytes || !restored("big_39", now) {
		t.Errorf("%d bytes kept, want at most %d with the newest", th.bytes, maxThoughtsBytes)
	}
	if msgs := sentBack("toolu_2"); &th.restore("k", "other key", domain.AnthropicExtra, msgs, now)[0] != &msgs[0] {
		t.Error("another key's request was changed")
	}
	// The same id calling another tool is another call.
	if msgs := []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "toolu_2", Name: "g"}}}}; &th.restore("k", "", domain.AnthropicExtra, msgs, now)[0] != &msgs[0] {
		t.Error("a call of another tool with the same id was changed")
	}
	// A call id longer than a request may send back is not remembered,
	// and the bytes count the keys too.
	var ids thoughts
	ids.remember("k", "", domain.AnthropicExtra, reply(strings.Repeat("x", maxThoughtIDLen+1)), now)
	ids.remember("k", "", domain.AnthropicExtra, reply("toolu_short"), now)
	if len(ids.byKey) != 1 || ids.bytes != len(thoughtKey("k", "", domain.ToolCall{ID: "toolu_short", Name: "f"}))+len(extra) {
		t.Errorf("%d kept in %d bytes, want the short id's alone, its key counted", len(ids.byKey), ids.bytes)
	}
}

// TestThoughtsJoinWhatCameBack: calls that came back with another member
// of extra_content than the provider's (the message's reasoning_content,
// which Parley puts in the first call's, or Gemini's signature) get the
// thinking remembered beside it; calls that came back with the provider's
// member keep theirs.
func TestThoughtsJoinWhatCameBack(t *testing.T) {
	var th thoughts
	now := time.Now()
	extra := thinkingContent([]thinkingBlock{{Type: "thinking", Thinking: "hmm", Signature: "s"}})
	th.remember("k", "", domain.AnthropicExtra, &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: "toolu_1", Name: "f", ExtraContent: extra}}}, now)
	back := func(extra string) []domain.ToolCall {
		msgs := []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "toolu_1", Name: "f", ExtraContent: []byte(extra)}}}}
		return th.restore("k", "", domain.AnthropicExtra, msgs, now)[0].ToolCalls
	}
	calls := back(`{"reasoning_content":"hmm","google":{"thought_signature":"x"}}`)
	if thinkingBlocks(calls) == nil || domain.ExtraString(calls[0].ExtraContent, domain.ReasoningExtra) != "" || !strings.Contains(string(calls[0].ExtraContent), `"google"`) {
		t.Errorf("sent back with its reasoning_content: %s, want the thinking in its place, the rest kept", calls[0].ExtraContent)
	}
	// Thinking of 600 KiB, and the same text as the message's
	// reasoning_content: together past MaxExtraContent, the thinking alone
	// within it.
	long := strings.Repeat("a", 600<<10)
	th.remember("k", "", domain.AnthropicExtra, &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: "toolu_1", Name: "f",
		ExtraContent: thinkingContent([]thinkingBlock{{Type: "thinking", Thinking: long, Signature: "s"}})}}}, now)
	if calls := back(`{"reasoning_content":"` + long + `"}`); thinkingBlocks(calls) == nil {
		t.Error("600 KiB of thinking sent back with its reasoning_content was not restored")
	}
	own := `{"anthropic":{"thinking":[{"type":"redacted_thinking","data":"d"}]}}`
	if calls := back(own); string(calls[0].ExtraContent) != own {
		t.Errorf("sent back with thinking of its own: %s, want it kept", calls[0].ExtraContent)
	}
	var reasoning thoughts
	reasoning.remember("k", "", domain.ReasoningExtra, &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: "call_1", ExtraContent: []byte(`{"reasoning_content":"why"}`)}}}, now)
	msgs := []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "call_1", ExtraContent: []byte(`{"google":{"thought_signature":"x"}}`)}}}}
	if got := string(reasoning.restore("k", "", domain.ReasoningExtra, msgs, now)[0].ToolCalls[0].ExtraContent); got != `{"google":{"thought_signature":"x"},"reasoning_content":"why"}` {
		t.Errorf("an OpenAI-wire call sent back with its signature only: %s, want the reasoning joined", got)
	}
	// Reasoning named "reasoning" (Groq's, OpenRouter's) is remembered and
	// restored as reasoning_content is, and a call that came back with it
	// is left as it is (the history not copied).
	reasoning.remember("k", "", domain.ReasoningExtra, &domain.LLMResult{ToolCalls: []domain.ToolCall{{ID: "call_2", ExtraContent: []byte(`{"reasoning":"named"}`)}}}, now)
	bare := []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "call_2"}}}}
	if got := string(reasoning.restore("k", "", domain.ReasoningExtra, bare, now)[0].ToolCalls[0].ExtraContent); got != `{"reasoning":"named"}` {
		t.Errorf("a call whose reasoning was named reasoning, sent back bare: %s, want it restored", got)
	}
	kept := []domain.LLMMessage{{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "call_2", ExtraContent: []byte(`{"reasoning":"named"}`)}}}}
	if got := reasoning.restore("k", "", domain.ReasoningExtra, kept, now); &got[0] != &kept[0] {
		t.Error("a call sent back with its reasoning named reasoning was copied to restore what it carries")
	}
}
