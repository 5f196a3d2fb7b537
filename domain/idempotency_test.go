package domain

import "testing"

// TestRequestHashIsStable: the digest kept with an idempotency key's turn
// must not change with Parley's version, or a request sent again across
// an upgrade would be refused as another request. This one was computed
// by the build that introduced the keys; a field added to the request
// since must leave a request without it hashing the same (omitempty).
func TestRequestHashIsStable(t *testing.T) {
	content, temp, maxTokens := "What is in this document?", 0.2, 100
	in := ChatCompletion{ChatID: "cht_1", ConversationID: "cnv_1", IdempotencyKey: "k", CompletionParams: CompletionParams{
		Messages: []InputMessage{
			{Role: RoleUser, Content: &content},
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "call_1", Type: "function", Name: "lookup", Arguments: `{"q":"x"}`}}},
			{Role: RoleTool, Content: &content, ToolCallID: "call_1"},
			{Role: RoleUser, DocumentID: "doc_1"},
		},
		Model: "gpt-4o", Temperature: &temp, MaxTokens: &maxTokens, Stop: []string{"END"},
		Tools: []Tool{{Type: "function", Name: "lookup", Parameters: []byte(`{"type":"object"}`)}},
	}}
	if got, want := requestHash(in), "0706ae78aa864017d202ba686e3ed2164412f2829913b2abc0aef853795f1a20"; got != want {
		t.Errorf("requestHash = %s; want %s, as the keys stored so far have it", got, want)
	}
	in.Messages[1].Refusal = "I can't."
	if requestHash(in) == "0706ae78aa864017d202ba686e3ed2164412f2829913b2abc0aef853795f1a20" {
		t.Error("a request with a refusal hashes as one without")
	}
	in.Messages[1].Refusal = ""
	in.ReasoningEffort = "high"
	high := requestHash(in)
	in.ReasoningEffort = "low"
	if high == "0706ae78aa864017d202ba686e3ed2164412f2829913b2abc0aef853795f1a20" || high == requestHash(in) {
		t.Error("a request's reasoningEffort does not change its hash")
	}
	in.ReasoningEffort = ""
	seed, penalty, parallel := 1, 0.0, false
	for name, set := range map[string]func(){
		"seed": func() { in.Seed = &seed }, "frequencyPenalty": func() { in.FrequencyPenalty = &penalty },
		"presencePenalty": func() { in.PresencePenalty = &penalty }, "parallelToolCalls": func() { in.ParallelToolCalls = &parallel },
	} {
		before := requestHash(in)
		set()
		if requestHash(in) == before {
			t.Errorf("a request's %s does not change its hash", name)
		}
	}
	// maxHistoryMessages: left out, 0 and 2 are three requests.
	zero, two := 0, 2
	hashes := map[string]bool{}
	for _, n := range []*int{nil, &zero, &two} {
		in.MaxHistoryMessages = n
		hashes[requestHash(in)] = true
	}
	if len(hashes) != 3 {
		t.Errorf("maxHistoryMessages left out, 0 and 2 give %d hashes, want 3", len(hashes))
	}
}
