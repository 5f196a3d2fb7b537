package rest_test

import (
	"testing"
)

// OpenAI's other sampling parameters (seed, the penalties) and
// parallelToolCalls reach OpenAI-wire providers as they were sent, in
// either spelling; an Anthropic provider gets parallelToolCalls as its
// disable_parallel_tool_use and refuses the rest, which it has no place for.
func TestSamplingParameters(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		sent := []string{"seed", "frequency_penalty", "presence_penalty", "parallel_tool_calls"}
		upstream := func() []any {
			body := lastUpstreamBody(t, h)
			out := make([]any, len(sent))
			for i, f := range sent {
				out[i] = body[f]
			}
			return out
		}
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("hi")}, "tools": weatherTools(),
			"seed": 7, "frequencyPenalty": 0.5, "presencePenalty": -1.5, "parallelToolCalls": false,
		})
		if got, want := jsonOf(upstream()), `[7,0.5,-1.5,false]`; got != want {
			t.Errorf("upstream %v = %s, want %s", sent, got, want)
		}
		// OpenAI's spelling at OpenAI's path, a penalty of 0 sent as it is,
		// and n 1, the one choice Parley answers.
		h.must(200, "POST", "/api/v1/chat/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "messages": []any{userMessage("hi")}, "tools": weatherTools(), "n": 1,
			"seed": 8, "frequency_penalty": 0, "presence_penalty": 2, "parallel_tool_calls": true,
		})
		if got, want := jsonOf(upstream()), `[8,0,2,true]`; got != want {
			t.Errorf("upstream %v = %s, want %s", sent, got, want)
		}
		// Left out, none goes.
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
		if got, want := jsonOf(upstream()), `[null,null,null,null]`; got != want {
			t.Errorf("upstream %v = %s, want none", sent, got)
		}

		for _, c := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"frequencyPenalty": 2.5}, "frequencyPenalty"},
			{map[string]any{"presencePenalty": -3}, "presencePenalty"},
			{map[string]any{"seed": 1.5}, "seed"},
			{map[string]any{"parallelToolCalls": false}, "parallelToolCalls"}, // without tools
			{map[string]any{"frequencyPenalty": 1, "frequency_penalty": 1}, "frequency_penalty"},
			{map[string]any{"n": 2}, "n"},
		} {
			c.body["messages"] = []any{userMessage("hi")}
			h.refusedByBoth(t, w, c.body, c.field)
		}

		a := h.anthropicWorld()
		for _, field := range []string{"seed", "frequencyPenalty", "presencePenalty"} {
			h.refusedByBoth(t, world{project: a.project, provider: a.anthropic, chat: a.anthropicChat},
				map[string]any{"messages": []any{userMessage("hi")}, field: 1}, field)
		}
		// Penalties of 0, OpenAI's defaults, which LangChain 0.3 sends with
		// every call, do nothing, and are taken.
		h.must(200, "POST", "/api/v1/chats/"+a.anthropicChat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("hi")}, "frequencyPenalty": 0, "presencePenalty": 0,
		})
		for _, c := range []struct {
			choice any
			want   string
		}{
			{nil, `{"disable_parallel_tool_use":true,"type":"auto"}`},
			{"required", `{"disable_parallel_tool_use":true,"type":"any"}`},
			{map[string]any{"type": "function", "function": map[string]any{"name": "clock"}}, `{"disable_parallel_tool_use":true,"name":"clock","type":"tool"}`},
			{"none", `{"type":"none"}`},
		} {
			req := map[string]any{"messages": []any{userMessage("hi")}, "tools": weatherTools(), "parallelToolCalls": false}
			if c.choice != nil {
				req["toolChoice"] = c.choice
			}
			h.must(200, "POST", "/api/v1/chats/"+a.anthropicChat+"/completions", h.admin, req)
			if got := jsonOf(lastUpstreamBody(t, h)["tool_choice"]); got != c.want {
				t.Errorf("toolChoice %v, parallelToolCalls false: Anthropic's tool_choice = %s, want %s", c.choice, got, c.want)
			}
		}
		h.must(200, "POST", "/api/v1/chats/"+a.anthropicChat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("hi")}, "tools": weatherTools(), "parallelToolCalls": true,
		})
		if tc, ok := lastUpstreamBody(t, h)["tool_choice"]; ok {
			t.Errorf("parallelToolCalls true: Anthropic got tool_choice %s, want none (its default allows several calls)", jsonOf(tc))
		}
	})
}
