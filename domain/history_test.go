package domain

import "testing"

// TestHistoryBytesCountsWhatGoesUpstream: the 32 MiB bound on continuing
// a conversation counts everything a continuation sends back of its
// history: text, refusals, tool calls' names and arguments, and their
// extra_content, which a provider may fill (up to MaxExtraContent per
// call) as it fills a reply.
func TestHistoryBytesCountsWhatGoesUpstream(t *testing.T) {
	msgs := []Message{
		{Role: RoleUser, Content: "hello"},
		{Role: RoleAssistant, Refusal: "no", ToolCalls: []ToolCall{
			{ID: "call_1", Name: "weather", Arguments: `{"city":"Oslo"}`, ExtraContent: []byte(`{"google":{"thought_signature":"sig"}}`)}}},
	}
	want := 2*messageOverhead + len("hello") + len("no") + len("weather") + len(`{"city":"Oslo"}`) + len(`{"google":{"thought_signature":"sig"}}`)
	if got := historyBytes(msgs); got != want {
		t.Errorf("historyBytes = %d, want %d", got, want)
	}
}
