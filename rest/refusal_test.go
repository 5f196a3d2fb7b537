package rest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestRefusalIsPassedOn: with structured outputs OpenAI answers a request
// it declines with message.refusal (streamed: delta.refusal) and content
// null. The client must get the refusal in the same shape: with content
// "" alone a JSON-schema client fails to parse the reply, with no word of
// why.
func TestRefusalIsPassedOn(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	const refusal = "I'm sorry, I can't help with that."
	h.up.Enqueue(llmtest.Behavior{Body: `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"` + refusal + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}`})
	got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if r := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["refusal"]; r != refusal {
		t.Errorf("message.refusal = %v, want %q: %s", r, refusal, jsonOf(got))
	}
	body := `data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant","refusal":""},"finish_reason":null}]}` + "\n\n" +
		`data: {"model":"m","choices":[{"index":0,"delta":{"refusal":"` + refusal + `"},"finish_reason":null}]}` + "\n\n" +
		`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
	h.up.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
	events := readSSE(t, stream(t, h, path, map[string]any{"messages": []any{userMessage("x")}}))
	var sb strings.Builder
	for _, ev := range events {
		if ev.data == nil {
			continue
		}
		for _, c := range ev.data["choices"].([]any) {
			if r, ok := c.(map[string]any)["delta"].(map[string]any)["refusal"].(string); ok {
				sb.WriteString(r)
			}
		}
		if ev.raw == "[DONE]" {
			break
		}
	}
	if sb.String() != refusal {
		t.Errorf("streamed refusal = %q, want %q", sb.String(), refusal)
	}
}
