package llm

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// openAIBenchStream is a reply as an OpenAI-wire provider streams it:
// reasoning, a text of many small pieces (some splitting a character),
// two tool calls whose arguments come in pieces, and the usage.
func openAIBenchStream() string {
	var b strings.Builder
	chunk := func(delta string) {
		fmt.Fprintf(&b, `data: {"id":"c1","object":"chat.completion.chunk","model":"bench","choices":[{"index":0,"delta":%s}]}`+"\n\n", delta)
	}
	for range 50 {
		chunk(`{"reasoning_content":"let me think a little "}`)
	}
	for i := range 400 {
		text := "word "
		if i%20 == 0 {
			text = "caf\xc3"
		} else if i%20 == 1 {
			text = "\xa9 "
		}
		chunk(`{"content":"` + text + `"}`)
	}
	for c := range 2 {
		chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":"call_%d","type":"function","function":{"name":"get_weather","arguments":""}}]}`, c, c))
		for range 20 {
			chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"function":{"arguments":"{\"city\": \"Paris\"} "}}]}`, c))
		}
	}
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n")
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","model":"bench","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":900,"total_tokens":1020}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

// BenchmarkOpenAIStream measures one streamed completion of an
// openai-compatible provider through Complete, the upstream answering
// from memory.
func BenchmarkOpenAIStream(b *testing.B) {
	c := New(Config{HTTPClient: &http.Client{Transport: canned{200, "text/event-stream", []byte(openAIBenchStream())}}})
	req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderOpenAICompatible, BaseURL: "http://openai.bench/v1", APIKey: "sk-bench"},
		Model: "bench", Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "hello"}}}
	onDelta := func(domain.Delta) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Complete(context.Background(), req, onDelta)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.ToolCalls) != 2 || res.FinishReason != "tool_calls" || res.Usage.TotalTokens != 1020 {
			b.Fatalf("result %+v", res)
		}
	}
}
