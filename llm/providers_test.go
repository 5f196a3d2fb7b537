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
	"time"

	"github.com/parleyhq/parley/domain"
)

// recording serves answer to every request, with its number (from 1)
// and body, and returns a function that gives the bodies sent so far.
func recording(t *testing.T, answer func(w http.ResponseWriter, n int, body string)) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		answer(w, n, string(b))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(bodies) }
}

// replay serves body with status to every request.
func replay(t *testing.T, status int, contentType, body string) *httptest.Server {
	t.Helper()
	srv, _ := recording(t, func(w http.ResponseWriter, _ int, _ string) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
	return srv
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
	return recording(t, func(w http.ResponseWriter, n int, b string) {
		if strings.Contains(b, `"reasoning_content"`) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":{"message":"'messages.1' : for 'role:assistant' the following must be satisfied[('messages.1' : property 'reasoning_content' is unsupported)]","type":"invalid_request_error"}}`)
			return
		}
		stream := strings.Contains(b, `"stream":true`)
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
	})
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

// TestErrorBodyShapes: the provider's own message of a 400 is what
// tells the caller what to fix. Gemini's OpenAI-compatible endpoint sends
// its errors as a one-element JSON array; Mistral (and vLLM before its
// OpenAI-shaped errors) at the top level, "message" a string or an object.
func TestErrorBodyShapes(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"gemini array", `[{
  "error": {
    "code": 400,
    "message": "Invalid JSON payload received. Unknown name \"frequency_penalty\": Cannot find field.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [
          {
            "description": "Invalid JSON payload received. Unknown name \"frequency_penalty\": Cannot find field."
          }
        ]
      }
    ]
  }
}
]`, `Unknown name "frequency_penalty"`},
		{"mistral top-level, message object", `{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","seed"],"msg":"Extra inputs are not permitted","input":1}]},"type":"invalid_request_error","param":null,"code":null}`,
			"Extra inputs are not permitted"},
		{"mistral/vllm top-level, message string", `{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 2723 tokens.","type":"BadRequestError","param":null,"code":400}`,
			"maximum context length is 2048 tokens"},
	} {
		for _, m := range modes() {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				srv := replay(t, 400, "application/json", tc.body)
				_, _, err := run(context.Background(), newClient(t), compatible(srv.URL), m.stream)
				if err == nil {
					t.Fatal("no error")
				}
				if msg := domain.MessageOf(err); !strings.Contains(msg, tc.want) {
					t.Errorf("message %q does not carry the provider's %q", msg, tc.want)
				}
			})
		}
	}
}

// TestXAIReasoningTokensOutsideCompletion: xAI's chat completions
// count reasoning outside completion_tokens (total = prompt + completion +
// reasoning; its documented and measured usage). The reply's output is
// completion + reasoning, which xAI bills as output.
func TestXAIReasoningTokensOutsideCompletion(t *testing.T) {
	body := `{"id":"x","object":"chat.completion","created":1,"model":"grok-4","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":10120,"completion_tokens":1499,"total_tokens":14428,"prompt_tokens_details":{"cached_tokens":128},"completion_tokens_details":{"reasoning_tokens":2809}}}`
	srv := replay(t, 200, "application/json", body)
	res, err := newClient(t).Complete(context.Background(), compatible(srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	u := res.Usage
	if u.PromptTokens+u.CompletionTokens != u.TotalTokens {
		t.Errorf("prompt %d + completion %d != total %d (the domain recomputes total as the sum, losing %d tokens)",
			u.PromptTokens, u.CompletionTokens, u.TotalTokens, u.TotalTokens-u.PromptTokens-u.CompletionTokens)
	}
	if u.CompletionTokens != 1499+2809 || u.ReasoningTokens != 2809 {
		t.Errorf("completion %d (want %d), reasoning %d (want 2809)", u.CompletionTokens, 1499+2809, u.ReasoningTokens)
	}
}

// TestOpenRouterErrorInChoice: OpenRouter's non-streamed reply that
// failed once begun has finish_reason "error" and the error in the choice
// (NonStreamingChoice.error); the README promises the provider's message.
func TestOpenRouterErrorInChoice(t *testing.T) {
	body := `{"id":"gen-1","object":"chat.completion","created":1,"model":"anthropic/claude","provider":"Anthropic","choices":[{"index":0,"finish_reason":"error","native_finish_reason":"error","message":{"role":"assistant","content":"Once upon"},"error":{"code":502,"message":"Provider disconnected unexpectedly"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`
	srv := replay(t, 200, "application/json", body)
	_, err := newClient(t).Complete(context.Background(), compatible(srv.URL), nil)
	if err == nil {
		t.Fatal("no error")
	}
	if msg := domain.MessageOf(err); !strings.Contains(msg, "Provider disconnected unexpectedly") {
		t.Errorf("message %q lacks the provider's", msg)
	}
}

// TestVLLMAbortIsNotAFinish: vLLM (and SGLang) end a stream the engine
// aborted (shutdown, scale-down, sleep, an abort request) with
// finish_reason "abort", then [DONE]: the reply did not finish, as with
// OpenRouter's "error". Parley reads it as "stop" and the cut-off reply is
// stored as complete.
func TestVLLMAbortIsNotAFinish(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			var body, ctype string
			if m.stream {
				ctype = "text/event-stream"
				body = `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"The answer is"},"finish_reason":null}]}` + "\n\n" +
					`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":""},"finish_reason":"abort"}]}` + "\n\n" +
					"data: [DONE]\n\n"
			} else {
				ctype = "application/json"
				body = `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is"},"finish_reason":"abort"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}`
			}
			srv := replay(t, 200, ctype, body)
			res, _, err := run(context.Background(), newClient(t), compatible(srv.URL), m.stream)
			if err == nil {
				t.Errorf("an aborted reply came back as finished: finish_reason %q, content %q", res.FinishReason, res.Content)
			}
		})
	}
}

// TestGeminiRetryDelay: Gemini answers a 429 without Retry-After; how
// long to wait is only in the body, a google.rpc.RetryInfo's retryDelay
// (through the OpenAI-compatible endpoint, inside its one-element array).
func TestGeminiRetryDelay(t *testing.T) {
	body := `[{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37.512s"}
    ]
  }
}
]`
	srv := replay(t, 429, "application/json", body)
	_, err := newClient(t).Complete(context.Background(), compatible(srv.URL), nil)
	if err == nil {
		t.Fatal("no error")
	}
	if ra := domain.RetryAfterOf(err); ra < 37*time.Second {
		t.Errorf("RetryAfter = %v, Gemini said 37.512s (message %q)", ra, domain.MessageOf(err))
	}
}
