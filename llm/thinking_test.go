package llm_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestAnthropicThinking: thinking goes to Anthropic as its thinking
// parameter, with room for it in max_tokens when the request sets none; a
// reply that thinks and calls tools carries its thinking blocks, with
// their signatures, in the first call's extra_content, and sent back with
// the calls they go before them, as Anthropic requires while thinking is
// on (the fake refuses the turn without them, as the API does).
func TestAnthropicThinking(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			c := newClient(t)
			req := request(domain.ProviderAnthropic, s, "weather in Paris?")
			req.Thinking = &domain.Thinking{Type: domain.ThinkingEnabled, BudgetTokens: 2048}
			req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
			s.Enqueue(llmtest.Behavior{Reasoning: "I should look it up", RedactedThinking: "ENCRYPTED", ToolCalls: []llmtest.ToolCall{{ID: "toolu_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
			res, _, err := run(context.Background(), c, req, m.stream)
			if err != nil {
				t.Fatal(err)
			}
			body := s.Last().Body
			if got, _ := json.Marshal(body["thinking"]); string(got) != `{"budget_tokens":2048,"type":"enabled"}` || body["max_tokens"] != float64(llm.DefaultAnthropicMaxTokens+2048) {
				t.Errorf("thinking %s, max_tokens %v; want enabled with the budget, and %d", got, body["max_tokens"], llm.DefaultAnthropicMaxTokens+2048)
			}
			if res.Reasoning != "I should look it up" || len(res.ToolCalls) != 1 {
				t.Fatalf("reasoning %q, %d calls; want the thinking and one call", res.Reasoning, len(res.ToolCalls))
			}
			// Both blocks, in order, streamed or not.
			extra := string(res.ToolCalls[0].ExtraContent)
			const want = `{"anthropic":{"thinking":[{"type":"thinking","thinking":"I should look it up","signature":"ErUBCkYIAxgCIkDfake"},{"type":"redacted_thinking","data":"ENCRYPTED"}]}}`
			if extra != want {
				t.Fatalf("the call's extra_content %s, want %s", extra, want)
			}

			answer := func(c *llm.Client, key domain.Secret, calls []domain.ToolCall) error {
				next := req
				next.Endpoint.APIKey = key
				next.Messages = append(append([]domain.LLMMessage{}, req.Messages...),
					domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: calls},
					domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "toolu_1", Content: "sunny"})
				_, _, err := run(context.Background(), c, next, m.stream)
				return err
			}
			if err := answer(c, testKey, res.ToolCalls); err != nil {
				t.Fatalf("the tool result, with the calls as they came: %v", err)
			}
			sent := func() string {
				return jsonOf(s.Last().Body["messages"].([]any)[1].(map[string]any)["content"].([]any)[:2])
			}
			const blocks = `[{"signature":"ErUBCkYIAxgCIkDfake","thinking":"I should look it up","type":"thinking"},{"data":"ENCRYPTED","type":"redacted_thinking"}]`
			if got := sent(); got != blocks {
				t.Errorf("the assistant turn went back starting %s, want its thinking blocks", got)
			}
			// Sent back without it, as OpenAI's SDKs' tool helpers send
			// calls, the calls get the thinking this client remembers of
			// them; another instance's client, or another key, has none,
			// and the provider refuses the turn.
			bare := []domain.ToolCall{res.ToolCalls[0]}
			bare[0].ExtraContent = nil
			if err := answer(c, testKey, bare); err != nil {
				t.Fatalf("calls sent back without their thinking, to the client that made them: %v", err)
			}
			if got := sent(); got != blocks {
				t.Errorf("the calls sent back bare went with %s, want the thinking remembered", got)
			}
			for name, tc := range map[string]struct {
				c   *llm.Client
				key domain.Secret
			}{"another instance": {newClient(t), testKey}, "another key": {c, "sk-test-another-key-0123456789"}} {
				var e *domain.Error
				if err := answer(tc.c, tc.key, bare); !errors.As(err, &e) || e.Kind != domain.Invalid || !strings.Contains(e.Message, "must start with a thinking block") {
					t.Errorf("calls sent back without their thinking, %s: %v, want the provider's refusal", name, err)
				}
			}
		})
	}
}

// TestAnthropicThinkingByDefaultRestored: a model that thinks without
// being asked (thinking unset) has its thinking remembered, and calls sent
// back without it get it, as they do with thinking on: such a model
// requires it as one with thinking on does. With thinking "disabled" the
// memory is not read.
func TestAnthropicThinkingByDefaultRestored(t *testing.T) {
	for _, thinking := range []*domain.Thinking{nil, {Type: domain.ThinkingDisabled}} {
		s := llmtest.NewServer(t)
		c := newClient(t)
		req := request(domain.ProviderAnthropic, s, "weather in Paris?")
		req.Thinking = thinking
		req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
		s.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: []llmtest.ToolCall{{ID: "toolu_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
		res, _, err := run(context.Background(), c, req, false)
		if err != nil || len(res.ToolCalls) != 1 {
			t.Fatalf("thinking %v: %v, %+v", thinking, err, res)
		}
		bare := res.ToolCalls[0]
		bare.ExtraContent = nil
		req.Messages = append(req.Messages, domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{bare}},
			domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "toolu_1", Content: "sunny"})
		if _, _, err := run(context.Background(), c, req, false); err != nil {
			t.Fatal(err)
		}
		first := s.Last().Body["messages"].([]any)[1].(map[string]any)["content"].([]any)[0].(map[string]any)
		if restored := first["type"] == "thinking"; restored != (thinking == nil) {
			t.Errorf("thinking %v: the calls sent back bare went starting with a %v block", thinking, first["type"])
		}
	}
}

// TestAnthropicEnabledThinkingQuiet: thinking "enabled" with a model
// that also takes adaptive thinking writes nothing to the process's
// stderr, where the SDK writes a deprecation line of its own for such a
// request (which would break JSON logs), and still goes as enabled.
func TestAnthropicEnabledThinkingQuiet(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderAnthropic, s, "hi")
	req.Model = "claude-opus-4-6"
	req.Thinking = &domain.Thinking{Type: domain.ThinkingEnabled, BudgetTokens: 2048}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	_, _, err = run(context.Background(), newClient(t), req, false)
	os.Stderr = stderr
	w.Close()
	written, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) > 0 {
		t.Errorf("the call wrote %q to stderr", written)
	}
	if got, _ := json.Marshal(s.Last().Body["thinking"]); string(got) != `{"budget_tokens":2048,"type":"enabled"}` {
		t.Errorf("thinking went as %s", got)
	}
}

// TestAnthropicThinkingDisplay: thinking's display goes to Anthropic as
// sent, and with "omitted" the reply's thinking blocks come signed but
// without text: no reasoning, the blocks still kept for the calls.
func TestAnthropicThinkingDisplay(t *testing.T) {
	for _, m := range modes() {
		for _, th := range []domain.Thinking{
			{Type: domain.ThinkingAdaptive, Display: domain.ThinkingSummarized},
			{Type: domain.ThinkingEnabled, BudgetTokens: 2048, Display: domain.ThinkingOmitted},
		} {
			s := llmtest.NewServer(t)
			req := request(domain.ProviderAnthropic, s, "weather in Paris?")
			req.Thinking = &th
			req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
			s.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: []llmtest.ToolCall{{ID: "toolu_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
			res, _, err := run(context.Background(), newClient(t), req, m.stream)
			if err != nil {
				t.Fatal(err)
			}
			sent, _ := s.Last().Body["thinking"].(map[string]any)
			if sent["display"] != th.Display || sent["type"] != th.Type {
				t.Errorf("%s %+v: thinking went as %v", m.name, th, sent)
			}
			wantReasoning := "look it up"
			if th.Display == domain.ThinkingOmitted {
				wantReasoning = ""
			}
			if res.Reasoning != wantReasoning || len(res.ToolCalls) != 1 || !strings.Contains(string(res.ToolCalls[0].ExtraContent), `"signature"`) {
				t.Errorf("%s %+v: reasoning %q, calls %+v; want %q and the signed block kept", m.name, th, res.Reasoning, res.ToolCalls, wantReasoning)
			}
		}
	}
}

// TestAnthropicAdaptiveThinking: adaptive thinking, and max_tokens with
// room for it when the request sets none; disabled sends it off.
func TestAnthropicAdaptiveThinking(t *testing.T) {
	for _, tc := range []struct {
		thinking  domain.Thinking
		want      string
		maxTokens float64
	}{
		{domain.Thinking{Type: domain.ThinkingAdaptive}, `{"type":"adaptive"}`, llm.DefaultAnthropicAdaptiveMaxTokens},
		{domain.Thinking{Type: domain.ThinkingDisabled}, `{"type":"disabled"}`, llm.DefaultAnthropicMaxTokens},
	} {
		t.Run(tc.thinking.Type, func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(domain.ProviderAnthropic, s)
			req.Thinking = &tc.thinking
			if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
				t.Fatal(err)
			}
			body := s.Last().Body
			if got, _ := json.Marshal(body["thinking"]); string(got) != tc.want || body["max_tokens"] != tc.maxTokens {
				t.Errorf("thinking %s, max_tokens %v; want %s and %v", got, body["max_tokens"], tc.want, tc.maxTokens)
			}
		})
	}
}

// TestAnthropicThinkingStaysWithAnthropic: a call that carries Anthropic's
// thinking goes to an OpenAI-wire provider (a chat's provider changed
// between the call and its result) without it, another vendor's
// extra_content (Gemini's thought signature) kept.
func TestAnthropicThinkingStaysWithAnthropic(t *testing.T) {
	const thinking = `"anthropic":{"thinking":[{"type":"thinking","thinking":"private","signature":"s"}]}`
	for _, tc := range []struct {
		name, extra, want string // want: the extra_content sent, "" for none
	}{
		{"alone", `{` + thinking + `}`, ""},
		{"beside Gemini's", `{"google":{"thought_signature":"g"},` + thinking + `}`, `{"google":{"thought_signature":"g"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(domain.ProviderOpenAICompatible, s, "weather?")
			req.Messages = append(req.Messages,
				domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{{ID: "c1", Type: "function", Name: "weather", Arguments: "{}", ExtraContent: []byte(tc.extra)}}},
				domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "c1", Content: "sunny"})
			if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
				t.Fatal(err)
			}
			call := s.Last().Body["messages"].([]any)[1].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)
			got := ""
			if e, ok := call["extra_content"]; ok {
				got = jsonOf(e)
			}
			if got != tc.want || strings.Contains(string(s.Last().RawBody), "private") {
				t.Errorf("extra_content sent %s, want %q (and no thinking anywhere)", got, tc.want)
			}
		})
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestReasoningUnderBothNames: vLLM sent its reasoning as both
// reasoning_content and reasoning for a while; it is read once.
func TestReasoningUnderBothNames(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			body := `{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning_content":"hmm","reasoning":"hmm"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
			b := llmtest.Behavior{Body: body}
			if m.stream {
				b = llmtest.Behavior{Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: `data: {"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"hmm","reasoning":"hmm"}}]}` + "\n\n" +
					`data: {"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"}
			}
			s.Enqueue(b)
			res, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), m.stream)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reasoning != "hmm" || res.Content != "hi" {
				t.Errorf("reasoning %q, content %q; want hmm once, and hi", res.Reasoning, res.Content)
			}
		})
	}
}

// TestStreamedCallCarriesTheReasoning: a streamed OpenAI-wire reply that
// reasons, then calls tools, carries the reasoning in its first call's
// first piece (extra_content), as an Anthropic stream carries its
// thinking: the openai npm client's stream helpers keep only the last
// piece of a delta's reasoning_content, and would send that back.
func TestStreamedCallCarriesTheReasoning(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderOpenAICompatible, s, "weather in Paris?")
	req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
	s.Enqueue(llmtest.Behavior{Reasoning: "I should look it up", ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
	var pieces int
	var first []byte
	_, err := newClient(t).Complete(context.Background(), req, func(d domain.Delta) error {
		if d.Reasoning != "" {
			pieces++
		}
		for _, c := range d.ToolCalls {
			if c.ID != "" && first == nil {
				first = c.ExtraContent
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := domain.ExtraString(first, domain.ReasoningExtra); got != "I should look it up" || pieces < 2 {
		t.Errorf("the first call's first piece carried %s after %d pieces of reasoning, want the whole reasoning", first, pieces)
	}
}

// TestReasoningBackWithCalls: an OpenAI-wire reply that reasons and calls
// tools carries its reasoning in the first call's extra_content, and the
// calls sent back go with it as the message's reasoning_content, as
// DeepSeek's thinking mode requires (the fake refuses them otherwise),
// without it in extra_content; calls sent back bare get it from this
// client's memory, not another's.
func TestReasoningBackWithCalls(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			c := newClient(t)
			req := request(domain.ProviderOpenAICompatible, s, "weather in Paris?")
			req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
			s.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
			res, _, err := run(context.Background(), c, req, m.stream)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res.ToolCalls[0].ExtraContent); got != `{"reasoning_content":"look it up"}` {
				t.Fatalf("the call's extra_content %s, want its reasoning", got)
			}
			answer := func(c *llm.Client, calls []domain.ToolCall) error {
				return answerCalls(c, s, req, calls, m.stream, llmtest.Behavior{ReasoningBack: true})
			}
			if err := answer(c, res.ToolCalls); err != nil {
				t.Fatalf("the calls as they came: %v", err)
			}
			sent := s.Last().Body["messages"].([]any)[1].(map[string]any)
			if sent["reasoning_content"] != "look it up" || sent["tool_calls"].([]any)[0].(map[string]any)["extra_content"] != nil {
				t.Errorf("the assistant turn went back as %s, want reasoning_content and no extra_content", jsonOf(sent))
			}
			bare := []domain.ToolCall{res.ToolCalls[0]}
			bare[0].ExtraContent = nil
			if err := answer(c, bare); err != nil {
				t.Errorf("bare calls, to the client that made them: %v", err)
			}
			var e *domain.Error
			if err := answer(newClient(t), bare); !errors.As(err, &e) || !strings.Contains(e.Message, "reasoning_content in the thinking mode must be passed back") {
				t.Errorf("bare calls, to another instance: %v, want the provider's refusal", err)
			}
		})
	}
}

// TestReasoningDetailsBackWithCalls: an OpenAI-wire reply that calls tools
// with reasoning_details (OpenRouter's, with Gemini's thought signature
// in an encrypted detail) keeps them, a stream's pieces joined into the
// details a whole reply gives, and the calls sent back go with them as
// the message's reasoning_details, as OpenRouter requires for Gemini (the
// fake refuses them otherwise), not in extra_content; calls sent back bare
// get them from this client's memory.
func TestReasoningDetailsBackWithCalls(t *testing.T) {
	for _, m := range modes() {
		for _, thought := range []string{"I should look it up", ""} { // the signature alone too
			t.Run(m.name+"/"+cmp.Or(thought, "signature only"), func(t *testing.T) {
				s := llmtest.NewServer(t)
				c := newClient(t)
				req := request(domain.ProviderOpenAICompatible, s, "weather in Paris?")
				req.Tools = []domain.Tool{{Type: "function", Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}}
				s.Enqueue(llmtest.Behavior{Reasoning: thought, ReasoningNamed: true, ThoughtSignature: "c2lnbmVk",
					ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
				res, _, err := run(context.Background(), c, req, m.stream)
				if err != nil {
					t.Fatal(err)
				}
				want := `[{"data":"c2lnbmVk","format":"google-gemini-v1","id":"call_1","index":1,"type":"reasoning.encrypted"}]`
				if thought != "" {
					want = `[{"format":"google-gemini-v1","index":0,"text":"I should look it up","type":"reasoning.text"},` + want[1:]
				}
				var got, wantV any
				_ = json.Unmarshal(domain.ExtraMember(res.ToolCalls[0].ExtraContent, domain.ReasoningDetailsExtra), &got)
				_ = json.Unmarshal([]byte(want), &wantV)
				if !reflect.DeepEqual(got, wantV) {
					t.Fatalf("the call's extra_content %s, want reasoning_details %s", res.ToolCalls[0].ExtraContent, want)
				}
				answer := func(c *llm.Client, calls []domain.ToolCall) error {
					return answerCalls(c, s, req, calls, m.stream, llmtest.Behavior{DetailsBack: true})
				}
				if err := answer(c, res.ToolCalls); err != nil {
					t.Fatalf("the calls as they came: %v", err)
				}
				sent := s.Last().Body["messages"].([]any)[1].(map[string]any)
				if !reflect.DeepEqual(sent["reasoning_details"], wantV) || (sent["reasoning"] != nil) != (thought != "") ||
					sent["tool_calls"].([]any)[0].(map[string]any)["extra_content"] != nil {
					t.Errorf("the assistant turn went back as %s, want reasoning_details, reasoning and no extra_content", jsonOf(sent))
				}
				bare := []domain.ToolCall{res.ToolCalls[0]}
				bare[0].ExtraContent = nil
				if err := answer(c, bare); err != nil {
					t.Errorf("bare calls, to the client that made them: %v", err)
				}
				// A client that sends back the message's reasoning_content
				// (REST puts it in the first call's extra_content) and no
				// more gets the details from the memory too.
				reasoned := []domain.ToolCall{res.ToolCalls[0]}
				reasoned[0].ExtraContent = domain.ExtraWith(nil, domain.ReasoningExtra, "I should look it up")
				if err := answer(c, reasoned); err != nil {
					t.Errorf("calls with the message's reasoning only, to the client that made them: %v", err)
				}
				var e *domain.Error
				if err := answer(newClient(t), bare); !errors.As(err, &e) || !strings.Contains(e.Message, "thought_signature") {
					t.Errorf("bare calls, to another instance: %v, want the provider's refusal", err)
				}
			})
		}
	}
}

// answerCalls sends req again through c with calls, its reply's, and a
// result for call_1, to an upstream that answers it as b says.
func answerCalls(c *llm.Client, s *llmtest.Server, req domain.LLMRequest, calls []domain.ToolCall, stream bool, b llmtest.Behavior) error {
	next := req
	next.Messages = append(append([]domain.LLMMessage{}, req.Messages...),
		domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: calls},
		domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "call_1", Content: "sunny"})
	s.Enqueue(b)
	_, _, err := run(context.Background(), c, next, stream)
	return err
}
