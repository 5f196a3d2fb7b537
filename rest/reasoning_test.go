package rest_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
)

// TestReasoningIsShownApart: a reasoning model's thinking comes back as
// the message's reasoning_content, streamed as delta.reasoning_content
// before the reply's text, from an OpenAI-wire provider and from
// Anthropic alike; the conversation stores the reply alone, and a
// continuation sends no thinking upstream.
func TestReasoningIsShownApart(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aw := h.anthropicWorld()
		const thought = "the user greets; greet back"
		for _, tc := range []struct{ name, chat string }{{"openai-wire", aw.openaiChat}, {"anthropic", aw.anthropicChat}} {
			t.Run(tc.name, func(t *testing.T) {
				path := "/api/v1/chats/" + tc.chat + "/completions"
				h.up.Enqueue(llmtest.Behavior{Reasoning: thought})
				got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hello")}})
				msg := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
				if msg["reasoning_content"] != thought || msg["content"] != "echo: hello" {
					t.Errorf("message = %v, want reasoning_content %q apart from content", msg, thought)
				}

				h.up.Enqueue(llmtest.Behavior{Reasoning: thought})
				res := stream(t, h, path, map[string]any{"messages": []any{userMessage("again")}, "conversationId": got["conversationId"]})
				var text, reasoning strings.Builder
				for _, ev := range readSSE(t, res) {
					choices, _ := ev.data["choices"].([]any)
					if len(choices) == 0 {
						continue
					}
					delta := choices[0].(map[string]any)["delta"].(map[string]any)
					if r, _ := delta["reasoning_content"].(string); r != "" {
						if text.Len() > 0 {
							t.Errorf("reasoning %q streamed after the text %q", r, text.String())
						}
						reasoning.WriteString(r)
					}
					if c, _ := delta["content"].(string); c != "" {
						text.WriteString(c)
					}
				}
				if reasoning.String() != thought || text.String() != "echo: again" {
					t.Errorf("streamed reasoning %q and text %q, want %q and %q", reasoning.String(), text.String(), thought, "echo: again")
				}
				// The continuation went up with the first reply's text
				// alone, and that is what the conversation keeps.
				for _, m := range h.up.Last().Messages {
					if strings.Contains(m.Content, thought) {
						t.Errorf("the thinking went upstream again: %+v", m)
					}
				}
				conv := h.must(200, "GET", "/api/v1/conversations/"+got["conversationId"].(string), h.admin, nil)
				for _, m := range conv["messages"].([]any) {
					if m := m.(map[string]any); strings.Contains(m["content"].(string), thought) || m["reasoning_content"] != nil {
						t.Errorf("a stored message holds the thinking: %v", m)
					}
				}
			})
		}
	})
}

// TestAnthropicThinkingToolLoop: with thinking on, a reply that calls
// tools carries its thinking in the first call's extra_content; per chat
// the stored turn keeps it, so a continuation that sends only the tool
// results goes back with the thinking before the calls (the fake refuses
// the turn otherwise, as Anthropic does); stateless, the calls sent back
// as they came carry it.
func TestAnthropicThinkingToolLoop(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aw := h.anthropicWorld()
		thinking := map[string]any{"type": "enabled", "budgetTokens": 2048}
		calls := []llmtest.ToolCall{{ID: "toolu_paris", Name: "weather", Arguments: `{"city":"Paris"}`}}

		h.up.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: calls})
		first := h.must(200, "POST", "/api/v1/chats/"+aw.anthropicChat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("Weather in Paris?")}, "tools": weatherTools(), "thinking": thinking})
		msg := first["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		toolCalls := msg["tool_calls"].([]any)
		if extra := jsonOf(toolCalls[0].(map[string]any)["extra_content"]); !strings.Contains(extra, `"anthropic":{"thinking":[{"signature":`) {
			t.Fatalf("the first call's extra_content %s, want its thinking", extra)
		}
		// The stored turn keeps it, where the conversation is read back.
		conv := h.must(200, "GET", "/api/v1/conversations/"+first["conversationId"].(string), h.admin, nil)
		stored := conv["messages"].([]any)[1].(map[string]any)["toolCalls"].([]any)[0].(map[string]any)
		if !strings.Contains(jsonOf(stored["extra_content"]), "look it up") {
			t.Errorf("the stored call %v, want its thinking in extra_content", stored)
		}
		result := map[string]any{"role": "tool", "tool_call_id": "toolu_paris", "content": "18C"}
		h.must(200, "POST", "/api/v1/chats/"+aw.anthropicChat+"/completions", h.admin, map[string]any{
			"conversationId": first["conversationId"], "messages": []any{result}, "tools": weatherTools(), "thinking": thinking})

		h.up.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: calls})
		stateless := map[string]any{"aiProviderId": aw.anthropic, "messages": []any{userMessage("Weather in Paris?")}, "tools": weatherTools(), "thinking": thinking}
		reply := h.must(200, "POST", "/api/v1/chats/completions", h.admin, stateless)["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		// The reply as it came, reasoning_content too, as OpenAI's SDKs keep it.
		if reply["reasoning_content"] != "look it up" {
			t.Fatalf("the reply %v, want its reasoning_content", reply)
		}
		stateless["messages"] = []any{userMessage("Weather in Paris?"), reply, result}
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, stateless)

		// Rebuilt with its reasoning_content but its calls without their
		// extra_content, as go-openai's types carry it: the thinking this
		// instance remembered goes back beside the reasoning.
		call := maps.Clone(reply["tool_calls"].([]any)[0].(map[string]any))
		delete(call, "extra_content")
		rebuilt := map[string]any{"role": "assistant", "content": nil, "reasoning_content": reply["reasoning_content"], "tool_calls": []any{call}}
		stateless["messages"] = []any{userMessage("Weather in Paris?"), rebuilt, result}
		if r := h.call("POST", "/api/v1/chats/completions", h.admin, stateless); r.Status != 200 {
			t.Errorf("the reply sent back with its reasoning_content, not its extra_content = %d %s, want its thinking restored", r.Status, r.Body)
		}
	})
}

// TestThinkingRefused: what thinking refuses, before a call upstream.
func TestThinkingRefused(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		msgs := []any{userMessage("hi")}
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"thinking": map[string]any{"type": "adaptive"}}, "thinking"}, // w's provider is OpenAI-wire
			{map[string]any{"thinking": map[string]any{"type": "enabled"}}, "thinking.budgetTokens"},
			{map[string]any{"thinking": map[string]any{"type": "enabled", "budgetTokens": 1000}}, "thinking.budgetTokens"},
			{map[string]any{"thinking": map[string]any{"type": "enabled", "budgetTokens": 2048}, "maxTokens": 2048}, "thinking.budgetTokens"},
			{map[string]any{"thinking": map[string]any{"type": "adaptive", "budgetTokens": 2048}}, "thinking.budgetTokens"},
			{map[string]any{"thinking": map[string]any{"type": "on"}}, "thinking.type"},
			{map[string]any{"thinking": map[string]any{"type": "adaptive", "display": "full"}}, "thinking.display"},
			{map[string]any{"thinking": map[string]any{"type": "disabled", "display": "summarized"}}, "thinking.display"},
			{map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi", "reasoning_content": "x"}}}, "messages[0].reasoning_content"},
			{map[string]any{"thinking": map[string]any{"type": "adaptive"}, "temperature": 0.5}, "temperature"},
			{map[string]any{"thinking": map[string]any{"type": "adaptive"}, "topP": 0.5}, "topP"},
			{map[string]any{"thinking": map[string]any{"type": "enabled", "budgetTokens": 2048}, "toolChoice": "required", "tools": weatherTools()}, "toolChoice"},
		} {
			if tc.body["messages"] == nil {
				tc.body["messages"] = msgs
			}
			h.refusedByBoth(t, w, tc.body, tc.field)
		}
	})
}

// TestThinkingInAnthropicsSpelling: thinking's budget in Anthropic's own
// spelling, as clients of its OpenAI-compatible endpoint send it, goes
// upstream as the budget; both spellings at once are a 400 naming it.
func TestThinkingInAnthropicsSpelling(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aw := h.anthropicWorld()
		path := "/api/v1/chats/" + aw.anthropicChat + "/chat/completions"
		h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")},
			"thinking": map[string]any{"type": "enabled", "budget_tokens": 3000}})
		if got := jsonOf(h.up.Last().Body["thinking"]); got != `{"budget_tokens":3000,"type":"enabled"}` {
			t.Errorf("thinking went upstream as %s, want the budget of 3000", got)
		}
		n := h.up.Count()
		r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")},
			"thinking": map[string]any{"type": "enabled", "budget_tokens": 3000, "budgetTokens": 3000}})
		if r.Status != 400 || r.ErrorField() != "thinking.budget_tokens" || h.up.Count() != n {
			t.Errorf("both spellings = %d %s (field %q), want a 400 naming thinking.budget_tokens before any call upstream", r.Status, r.Body, r.ErrorField())
		}
		// A budget the domain refuses is named as it was sent.
		r = h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")}, "max_tokens": 2000,
			"thinking": map[string]any{"type": "enabled", "budget_tokens": 3000}})
		if r.Status != 400 || r.ErrorField() != "thinking.budget_tokens" || !strings.Contains(r.ErrorMessage(), "thinking.budget_tokens (Anthropic's spelling of thinking.budgetTokens)") || h.up.Count() != n {
			t.Errorf("budget over max_tokens = %d %s (field %q), want a 400 naming thinking.budget_tokens as Anthropic's spelling", r.Status, r.Body, r.ErrorField())
		}
	})
}

// TestReasoningBackWithCalls: DeepSeek's thinking mode requires an
// assistant turn that called tools back with its reasoning_content. Per
// chat the stored turn keeps it in the first call's extra_content; a
// stateless client may send it as the message's reasoning_content.
func TestReasoningBackWithCalls(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		calls := []llmtest.ToolCall{{ID: "call_paris", Name: "weather", Arguments: `{"city":"Paris"}`}}
		h.up.Enqueue(llmtest.Behavior{Reasoning: "look it up", ToolCalls: calls})
		first := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("Weather in Paris?")}, "tools": weatherTools()})
		result := map[string]any{"role": "tool", "tool_call_id": "call_paris", "content": "18C"}
		h.up.Enqueue(llmtest.Behavior{ReasoningBack: true})
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": first["conversationId"], "messages": []any{result}, "tools": weatherTools()})
		if got := h.up.Last().Body["messages"].([]any)[2].(map[string]any)["reasoning_content"]; got != "look it up" {
			t.Errorf("the stored turn went back with reasoning_content %v, want its reasoning", got)
		}

		// A history this instance never answered: the message's own
		// reasoning_content goes back with its calls.
		h.up.Enqueue(llmtest.Behavior{ReasoningBack: true})
		h.must(200, "POST", "/api/v1/chat/completions", h.admin, map[string]any{"aiProviderId": w.provider, "tools": weatherTools(),
			"messages": []any{userMessage("Weather in Oslo?"),
				map[string]any{"role": "assistant", "reasoning_content": "check Oslo", "tool_calls": []any{map[string]any{"id": "call_oslo", "type": "function",
					"function": map[string]any{"name": "weather", "arguments": `{"city":"Oslo"}`}}}},
				map[string]any{"role": "tool", "tool_call_id": "call_oslo", "content": "5C"}}})
		if got := h.up.Last().Body["messages"].([]any)[1].(map[string]any)["reasoning_content"]; got != "check Oslo" {
			t.Errorf("the client's reasoning_content went back as %v", got)
		}
	})
}

// TestReasoningStaysWithItsCaller: the reasoning an instance remembers of a
// reply's tool calls goes back only with the same caller's calls. Upstreams
// choose call ids, and some the same in every conversation (Kimi K2's
// "functions.weather:0"); keyless providers, or one key in two projects,
// share the provider key. Another project's caller sending a call of that
// id without reasoning got the first caller's reasoning in its request.
func TestReasoningStaysWithItsCaller(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		a := h.world()
		_, mallory := h.user("mallory")
		b := h.project(mallory, "b")
		bProvider := h.provider(mallory, b)
		calls := []llmtest.ToolCall{{ID: "functions.weather:0", Name: "weather", Arguments: `{"city":"Paris"}`}}
		h.up.Enqueue(llmtest.Behavior{Reasoning: "PRIVATE: customer 4711", ToolCalls: calls})
		h.must(200, "POST", "/api/v1/chat/completions", h.admin, map[string]any{"aiProviderId": a.provider, "tools": weatherTools(),
			"messages": []any{userMessage("Weather in Paris?")}})
		bare := func(key, provider string) any {
			h.must(200, "POST", "/api/v1/chat/completions", key, map[string]any{"aiProviderId": provider, "tools": weatherTools(),
				"messages": []any{userMessage("Weather in Paris?"),
					map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "functions.weather:0", "type": "function",
						"function": map[string]any{"name": "weather", "arguments": `{"city":"Paris"}`}}}},
					map[string]any{"role": "tool", "tool_call_id": "functions.weather:0", "content": "18C"}}})
			return h.up.Last().Body["messages"].([]any)[1].(map[string]any)["reasoning_content"]
		}
		if got := bare(mallory, bProvider); got != nil {
			t.Errorf("another project's caller's request went up with reasoning_content %v", got)
		}
		// Nor another member's, of the same project through the same provider.
		uid, bob := h.user("bob")
		h.setRole(h.admin, a.project, uid, "editor")
		if got := bare(bob, a.provider); got != nil {
			t.Errorf("another member's request went up with reasoning_content %v", got)
		}
		if got := bare(h.admin, a.provider); got != "PRIVATE: customer 4711" {
			t.Errorf("the caller's own calls went back with reasoning_content %v, want what it was sent", got)
		}
	})
}
