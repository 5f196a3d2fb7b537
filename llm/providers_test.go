package llm_test

// Provider-by-provider wire checks. Each test
// replays a provider's documented bytes from an httptest server and fails
// where Parley reads or sends them wrong.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// replay serves body with status to every request, recording the bodies.
func replay(t *testing.T, status int, contentType, body string) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func compatible(url string) domain.LLMRequest {
	return domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderOpenAICompatible, BaseURL: url + "/v1", APIKey: testKey},
		Model: "m", Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "hi"}}}
}

// groqLike answers as Groq does for its reasoning models: the thinking as
// "reasoning", and a 400 for an assistant message that carries
// reasoning_content. Its first reply calls a tool, streamed when asked;
// the next ones answer text. It records the bodies it was sent.
func groqLike(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if strings.Contains(string(b), `"reasoning_content"`) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":{"message":"'messages.1' : for 'role:assistant' the following must be satisfied[('messages.1' : property 'reasoning_content' is unsupported)]","type":"invalid_request_error"}}`)
			return
		}
		stream := strings.Contains(string(b), `"stream":true`)
		switch {
		case n == 1 && stream:
			w.Header().Set("Content-Type", "text/event-stream")
			for _, chunk := range []string{
				`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"delta":{"role":"assistant","reasoning":"I should look up "},"finish_reason":null}]}`,
				`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"delta":{"reasoning":"the weather."},"finish_reason":null}]}`,
				`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"fc_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":null}]}`,
				`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
			} {
				_, _ = io.WriteString(w, "data: "+chunk+"\n\n")
			}
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
		case n == 1:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"message":{"role":"assistant","reasoning":"I should look up the weather.","tool_calls":[{"id":"fc_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"openai/gpt-oss-20b","choices":[{"index":0,"message":{"role":"assistant","content":"Sunny."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":2,"total_tokens":22}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(bodies) }
}

// TestReasoningGoesBackByItsName: Groq's reasoning models (gpt-oss, qwen3)
// give their thinking as "reasoning" and refuse an assistant message that
// carries reasoning_content; a tool loop's second call failed with that
// 400, whether the client kept the call's extra_content or not (Parley
// restores what it remembered). The reasoning goes back as "reasoning",
// the name it came by.
func TestReasoningGoesBackByItsName(t *testing.T) {
	for _, m := range modes() {
		for _, keep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/extra_content kept %v", m.name, keep), func(t *testing.T) {
				srv, bodies := groqLike(t)
				c := newClient(t)
				req := compatible(srv.URL)
				req.Model = "openai/gpt-oss-20b"
				req.Tools = []domain.Tool{{Name: "get_weather", Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string"}}}`)}}
				first, _, err := run(context.Background(), c, req, m.stream)
				if err != nil {
					t.Fatal(err)
				}
				if len(first.ToolCalls) != 1 || first.Reasoning != "I should look up the weather." {
					t.Fatalf("calls %+v, reasoning %q", first.ToolCalls, first.Reasoning)
				}
				call := first.ToolCalls[0]
				if !keep {
					call.ExtraContent = nil
				}
				req.Messages = append(req.Messages,
					domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{call}},
					domain.LLMMessage{Role: domain.RoleTool, ToolCallID: call.ID, Content: "sunny"})
				if _, err := c.Complete(context.Background(), req, nil); err != nil {
					t.Fatalf("the tool loop's second call failed: %v", domain.MessageOf(err))
				}
				sent := bodies()
				if len(sent) != 2 || !strings.Contains(sent[1], `"reasoning":"I should look up the weather."`) {
					t.Errorf("the second call went as %d requests, the last %s; want one, with the reasoning named reasoning", len(sent)-1, sent[len(sent)-1])
				}
			})
		}
	}
}

// TestRefusedReasoningIsSentAgainWithout: a chat whose provider changed
// (DeepSeek's replies, then Groq, Cerebras or Mistral, which refuse
// reasoning_content) sends the old replies' reasoning back; refused for
// it, the request goes again without any, once.
func TestRefusedReasoningIsSentAgainWithout(t *testing.T) {
	srv, bodies := groqLike(t)
	req := compatible(srv.URL)
	call := domain.ToolCall{ID: "call_1", Type: "function", Name: "f", Arguments: "{}",
		ExtraContent: domain.ExtraWith(nil, domain.ReasoningExtra, "DeepSeek's thinking")}
	req.Messages = append(req.Messages,
		domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{call}},
		domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "call_1", Content: "done"},
		domain.LLMMessage{Role: domain.RoleUser, Content: "and then?"})
	if _, err := newClient(t).Complete(context.Background(), req, nil); err != nil {
		t.Fatalf("refused for its reasoning, the call failed: %v", domain.MessageOf(err))
	}
	sent := bodies()
	if len(sent) != 2 || strings.Contains(sent[1], "DeepSeek's thinking") {
		t.Errorf("sent %d requests, the last %s; want 2, the second without the reasoning", len(sent), sent[len(sent)-1])
	}
}
