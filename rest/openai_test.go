package rest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
)

// OpenAI's SDKs post to {baseURL}/chat/completions with OpenAI's own
// spelling of the fields; Parley answers there too and reads them as its
// own camelCase ones (rest/openai.go).
func TestOpenAISpelling(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()

		// Per chat at …/chats/{chatId}/chat/completions: every field in
		// OpenAI's spelling reaches the upstream as its camelCase twin does.
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls})
		got := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/chat/completions", h.admin, map[string]any{
			"model": "", "stream": false, "stream_options": map[string]any{"include_usage": true},
			"messages": []any{
				map[string]any{"role": "developer", "content": "Be brief."},
				userMessage("weather in Paris?"),
			},
			"tools": weatherTools(), "tool_choice": "required", "max_completion_tokens": 7, "top_p": 0.5, "reasoning_effort": "low",
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "report", "schema": json.RawMessage(weatherSchema), "strict": true}},
		})
		body := lastUpstreamBody(t, h)
		if body["max_tokens"] != 7.0 || body["top_p"] != 0.5 || body["tool_choice"] != "required" || body["reasoning_effort"] != "low" {
			t.Errorf("upstream max_tokens = %v, top_p = %v, tool_choice = %v, reasoning_effort = %v; want 7, 0.5, required, low",
				body["max_tokens"], body["top_p"], body["tool_choice"], body["reasoning_effort"])
		}
		if got, want := jsonOf(body["response_format"]), normalized(t, `{"type":"json_schema","json_schema":{"name":"report","schema":`+weatherSchema+`,"strict":true}}`); got != want {
			t.Errorf("upstream response_format = %s\nwant %s", got, want)
		}
		// The developer message is the system message, in place of the chat's.
		if got, want := jsonOf(body["messages"]), normalized(t, `[{"role":"system","content":"Be brief."},{"role":"user","content":"weather in Paris?"}]`); got != want {
			t.Errorf("upstream messages = %s\nwant %s", got, want)
		}
		msg := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		if jsonOf(msg["tool_calls"]) != jsonOf(wantToolCalls()) || got["conversationId"] == nil {
			t.Fatalf("reply = %v, want fakeCalls in a conversation", got)
		}

		// Stateless at …/chat/completions, the exchange sent back as an
		// SDK sends it: the reply's message as it came (content null), its
		// tool results with tool_call_id (and the name LangChain adds).
		toolMsg := func(id, content string) map[string]any {
			return map[string]any{"role": "tool", "tool_call_id": id, "name": "weather", "content": content}
		}
		got = h.must(200, "POST", "/api/v1/chat/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "model": "", "tools": weatherTools(), "max_tokens": 9, "messages": []any{
				userMessage("weather in Paris?"), msg, toolMsg("call_paris", "18C"), toolMsg("call_now", "noon"),
			},
		})
		want := `[{"role":"user","content":"weather in Paris?"},
			{"role":"assistant","tool_calls":` + jsonOf(wantToolCalls()) + `},
			{"role":"tool","content":"18C","tool_call_id":"call_paris"},
			{"role":"tool","content":"noon","tool_call_id":"call_now"}]`
		body = lastUpstreamBody(t, h)
		if got := jsonOf(body["messages"]); got != normalized(t, want) {
			t.Errorf("upstream messages = %s\nwant %s", got, normalized(t, want))
		}
		if body["max_tokens"] != 9.0 {
			t.Errorf("upstream max_tokens = %v, want 9", body["max_tokens"])
		}
		if got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] != "echo: weather in Paris?" {
			t.Errorf("reply = %v", got)
		}

		// LangChain sends a reply without text as content "".
		msg["content"] = ""
		h.must(200, "POST", "/api/v1/chat/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "model": "", "tools": weatherTools(), "messages": []any{
				userMessage("weather in Paris?"), msg, toolMsg("call_paris", "18C"), toolMsg("call_now", "noon"),
			},
		})
		if got := jsonOf(lastUpstreamBody(t, h)["messages"]); got != normalized(t, want) {
			t.Errorf("with content \"\": upstream messages = %s\nwant %s", got, normalized(t, want))
		}

		// Streamed at the OpenAI path, stream_options taken: the last chunk
		// before [DONE] carries usage, as it always does.
		events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/chat/completions", map[string]any{
			"messages": []any{userMessage("hello")}, "stream_options": map[string]any{"include_usage": true, "include_obfuscation": false},
		}))
		if len(events) < 3 || events[len(events)-1].raw != "[DONE]" || events[len(events)-2].data["usage"] == nil {
			t.Errorf("stream events = %+v, want chunks, usage in the last, then [DONE]", events)
		}

		// One field in both spellings, a participant name, and a field
		// Parley does not take are refused, naming the field, on both
		// endpoints (at Parley's paths: OpenAI's reach the same handlers).
		for _, c := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"maxTokens": 5, "max_tokens": 5}, "max_tokens"},
			{map[string]any{"max_tokens": 5, "max_completion_tokens": 5}, "max_completion_tokens"},
			{map[string]any{"maxTokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"},
			{map[string]any{"topP": 0.5, "top_p": 0.5}, "top_p"},
			{map[string]any{"toolChoice": "auto", "tool_choice": "auto", "tools": weatherTools()}, "tool_choice"},
			{map[string]any{"responseFormat": map[string]any{"type": "text"}, "response_format": map[string]any{"type": "text"}}, "response_format"},
			{map[string]any{"reasoningEffort": "low", "reasoning_effort": "low"}, "reasoning_effort"},
			{map[string]any{"n": 2}, "n"},
			{map[string]any{"stream_options": map[string]any{"include_usage": true, "chunk_size": 2}}, "stream_options.chunk_size"},
		} {
			c.body["messages"] = []any{userMessage("hi")}
			h.refusedByBoth(t, w, c.body, c.field)
		}
		h.refusedByBoth(t, w, map[string]any{"messages": []any{
			map[string]any{"role": "user", "content": "hi", "name": "ann"},
		}}, "messages[0].name")
		h.refusedByBoth(t, w, map[string]any{"messages": []any{userMessage("weather?"),
			map[string]any{"role": "assistant", "toolCalls": wantToolCalls(), "tool_calls": wantToolCalls()},
			map[string]any{"role": "tool", "toolCallId": "call_paris", "tool_call_id": "call_paris", "content": "18C"},
		}}, "messages[1].tool_calls")
		h.refusedByBoth(t, w, map[string]any{"messages": []any{userMessage("weather?"),
			map[string]any{"role": "assistant", "tool_calls": wantToolCalls()[:1]},
			map[string]any{"role": "tool", "toolCallId": "call_paris", "tool_call_id": "call_paris", "content": "18C"},
		}}, "messages[2].tool_call_id")
		// An OpenAI parameter Parley does not take is named as one.
		r := h.call("POST", "/api/v1/chat/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}, "user": "u1"})
		if r.Status != 400 || r.ErrorField() != "user" || !strings.Contains(r.ErrorMessage(), "OpenAI parameter that Parley does not take") {
			t.Errorf("user = %d %s, want 400 saying Parley does not take it", r.Status, r.Body)
		}
		// A stateless client given …/api/v1/chats as its base URL is told the right one.
		r = h.call("POST", "/api/v1/chats/chat/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi")}})
		if r.Status != 404 || !strings.Contains(r.ErrorMessage(), "base URL is …/api/v1 ") {
			t.Errorf("POST /api/v1/chats/chat/completions = %d %s, want 404 naming the stateless base URL", r.Status, r.Body)
		}
		// A value the domain refuses is named as it was sent, streamed or
		// not; in Parley's spelling, as Parley's.
		for _, c := range []struct {
			body         map[string]any
			field, about string
		}{
			{map[string]any{"max_tokens": 0}, "max_tokens", "max_tokens (OpenAI's spelling of maxTokens): maxTokens must be a positive integer"},
			{map[string]any{"max_completion_tokens": 0, "stream": true}, "max_completion_tokens", "OpenAI's spelling of maxTokens"},
			{map[string]any{"frequency_penalty": 3}, "frequency_penalty", "between -2 and 2"},
			{map[string]any{"parallel_tool_calls": false}, "parallel_tool_calls", "send it with tools"},
			{map[string]any{"maxTokens": 0}, "maxTokens", "maxTokens must be a positive integer"},
		} {
			c.body["aiProviderId"], c.body["messages"] = w.provider, []any{userMessage("hi")}
			r = h.call("POST", "/api/v1/chat/completions", h.admin, c.body)
			if r.Status != 400 || r.ErrorField() != c.field || !strings.Contains(r.ErrorMessage(), c.about) {
				t.Errorf("%v = %d %s, want 400 on %s saying %q", c.body, r.Status, r.Body, c.field, c.about)
			}
		}
	})
}
