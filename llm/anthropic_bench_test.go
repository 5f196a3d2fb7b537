package llm

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// anthropicBenchStream is a reply as the Messages API streams it: a
// thinking block, a text block of many small pieces (some splitting a
// character) and two tool calls whose input comes in pieces.
func anthropicBenchStream() string {
	var b strings.Builder
	ev := func(typ, data string) { fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", typ, data) }
	ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-bench","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":120,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`)
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`)
	ev("ping", `{"type":"ping"}`)
	for range 50 {
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"let me think a little "}}`)
	}
	ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnbmF0dXJl"}}`)
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`)
	for i := range 400 {
		text := "word "
		if i%20 == 0 {
			text = "caf\xc3" // a character split between two pieces
		} else if i%20 == 1 {
			text = "\xa9 "
		}
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"`+text+`"}}`)
	}
	ev("content_block_stop", `{"type":"content_block_stop","index":1}`)
	for c := range 2 {
		i := 2 + c
		ev("content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"tool_use","id":"toolu_%d","name":"get_weather","input":{}}}`, i, c))
		ev("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}`, i))
		for range 20 {
			ev("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":"\"Par"}}`, i))
			ev("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":"is\" "}}`, i))
		}
		ev("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":"}"}}`, i))
		ev("content_block_stop", fmt.Sprintf(`{"type":"content_block_stop","index":%d}`, i))
	}
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":900}}`)
	ev("message_stop", `{"type":"message_stop"}`)
	return b.String()
}

// BenchmarkAnthropicStream measures one streamed Anthropic completion
// through Complete, the upstream answering from memory.
func BenchmarkAnthropicStream(b *testing.B) {
	c := New(Config{HTTPClient: &http.Client{Transport: canned{200, "text/event-stream", []byte(anthropicBenchStream())}}})
	req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderAnthropic, BaseURL: "http://anthropic.bench", APIKey: "sk-bench"},
		Model: "claude-bench", Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "hello"}}}
	deltas := 0
	onDelta := func(domain.Delta) error { deltas++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Complete(context.Background(), req, onDelta)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.ToolCalls) != 2 || res.FinishReason != "tool_calls" {
			b.Fatalf("result %+v", res)
		}
	}
}

// BenchmarkAnthropicParams measures building the Messages API request of
// a conversation with a system prompt, tools, tool calls and their
// results.
func BenchmarkAnthropicParams(b *testing.B) {
	req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderAnthropic, PromptCache: "5m"}, Model: "claude-bench",
		Thinking:       &domain.Thinking{Type: domain.ThinkingEnabled, BudgetTokens: 2048},
		ResponseFormat: &domain.ResponseFormat{Type: domain.ResponseJSONObject},
		Tools: []domain.Tool{{Type: "function", Name: "get_weather", Description: "The weather in a city.",
			Parameters: []byte(`{"properties":{"city":{"type":"string"}}}`)}},
		ParallelToolCalls: new(bool)}
	req.Messages = append(req.Messages, domain.LLMMessage{Role: domain.RoleSystem, Content: "You are terse."})
	for i := range 20 {
		id := fmt.Sprintf("call_%d", i)
		req.Messages = append(req.Messages,
			domain.LLMMessage{Role: domain.RoleUser, Content: "What is the weather in Paris?"},
			domain.LLMMessage{Role: domain.RoleAssistant, Content: "Let me look.", ToolCalls: []domain.ToolCall{{ID: id, Type: "function", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
			domain.LLMMessage{Role: domain.RoleTool, ToolCallID: id, Content: "sunny"},
			domain.LLMMessage{Role: domain.RoleAssistant, Content: "Sunny."})
	}
	req.Messages = append(req.Messages, domain.LLMMessage{Role: domain.RoleUser, Content: "And tomorrow?"})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := anthropicParams(req); err != nil {
			b.Fatal(err)
		}
	}
}
