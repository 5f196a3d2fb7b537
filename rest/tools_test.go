package rest_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

const weatherSchema = `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`

// weatherTools is the tools field of a request: one function with
// parameters and one without.
func weatherTools() []any {
	var params map[string]any
	_ = json.Unmarshal([]byte(weatherSchema), &params)
	return []any{
		map[string]any{"type": "function", "function": map[string]any{"name": "weather", "description": "Current weather in a city.", "parameters": params}},
		map[string]any{"type": "function", "function": map[string]any{"name": "clock"}},
	}
}

// fakeCalls are the tool calls the fake upstream answers with.
var fakeCalls = []llmtest.ToolCall{
	{ID: "call_paris", Name: "weather", Arguments: `{"city":"Paris"}`},
	{ID: "call_now", Name: "clock", Arguments: `{}`},
}

// wantToolCalls is fakeCalls as OpenAI's tool_calls (and Parley's toolCalls).
func wantToolCalls() []any {
	var out []any
	for _, c := range fakeCalls {
		out = append(out, map[string]any{"id": c.ID, "type": "function", "function": map[string]any{"name": c.Name, "arguments": c.Arguments}})
	}
	return out
}

// jsonOf re-encodes a decoded value with sorted keys, for comparisons.
func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func normalized(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	return jsonOf(v)
}

// streamedToolCalls reassembles the tool calls of a stream's chunks as an
// OpenAI client does, checking their shape, and returns them with the text.
func streamedToolCalls(t *testing.T, events []sseEvent) (calls []any, text string, finish string) {
	t.Helper()
	var sb strings.Builder
	type call struct{ id, name, args string }
	var cs []*call
	for _, ev := range events {
		if ev.data == nil {
			continue
		}
		for _, c := range ev.data["choices"].([]any) {
			ch := c.(map[string]any)
			if f, ok := ch["finish_reason"].(string); ok {
				finish = f
			}
			delta := ch["delta"].(map[string]any)
			if s, ok := delta["content"].(string); ok {
				sb.WriteString(s)
			}
			tcs, _ := delta["tool_calls"].([]any)
			for _, x := range tcs {
				tc := x.(map[string]any)
				i := int(tc["index"].(float64))
				fn := tc["function"].(map[string]any)
				args, ok := fn["arguments"].(string)
				if !ok {
					t.Fatalf("tool call delta without function.arguments: %s", ev.raw)
				}
				switch {
				case i == len(cs):
					id, _ := tc["id"].(string)
					name, _ := fn["name"].(string)
					if id == "" || name == "" || tc["type"] != "function" {
						t.Fatalf("the first delta of tool call %d lacks id, type or name: %s", i, ev.raw)
					}
					cs = append(cs, &call{id: id, name: name, args: args})
				case i < len(cs):
					if _, ok := tc["id"]; ok {
						t.Errorf("a later delta of tool call %d repeats its id: %s", i, ev.raw)
					}
					cs[i].args += args
				default:
					t.Fatalf("tool call index %d skips ahead: %s", i, ev.raw)
				}
			}
		}
	}
	for _, c := range cs {
		calls = append(calls, map[string]any{"id": c.id, "type": "function", "function": map[string]any{"name": c.name, "arguments": c.args}})
	}
	return calls, sb.String(), finish
}

func TestToolsOpenAIWire(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()

		// Stateless, not streamed: the fields pass through as OpenAI's.
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls})
		got := h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "messages": []any{userMessage("weather in Paris?")},
			"tools": weatherTools(), "toolChoice": "required", "responseFormat": map[string]any{"type": "json_object"},
		})
		body := lastUpstreamBody(t, h)
		wantTools := `[{"type":"function","function":{"name":"weather","description":"Current weather in a city.","parameters":` + weatherSchema + `}},` +
			`{"type":"function","function":{"name":"clock","parameters":{"type":"object","properties":{}}}}]`
		if got, want := jsonOf(body["tools"]), normalized(t, wantTools); got != want {
			t.Errorf("upstream tools = %s\nwant %s", got, want)
		}
		if body["tool_choice"] != "required" || jsonOf(body["response_format"]) != `{"type":"json_object"}` {
			t.Errorf("upstream tool_choice = %v, response_format = %s", body["tool_choice"], jsonOf(body["response_format"]))
		}
		choice := got["choices"].([]any)[0].(map[string]any)
		msg := choice["message"].(map[string]any)
		if content, ok := msg["content"]; !ok || content != nil {
			t.Errorf("message.content = %v (present %v), want null", content, ok)
		}
		if got, want := jsonOf(msg["tool_calls"]), jsonOf(wantToolCalls()); got != want {
			t.Errorf("message.tool_calls = %s\nwant %s", got, want)
		}
		if choice["finish_reason"] != "tool_calls" {
			t.Errorf("finish_reason = %v, want tool_calls", choice["finish_reason"])
		}

		// JSON schema, and a function named by toolChoice.
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "messages": []any{userMessage("weather?")}, "tools": weatherTools(),
			"toolChoice":     map[string]any{"type": "function", "function": map[string]any{"name": "weather"}},
			"responseFormat": map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "report", "schema": json.RawMessage(weatherSchema), "strict": true}},
		})
		body = lastUpstreamBody(t, h)
		if got, want := jsonOf(body["tool_choice"]), `{"function":{"name":"weather"},"type":"function"}`; got != want {
			t.Errorf("upstream tool_choice = %s, want %s", got, want)
		}
		if got, want := jsonOf(body["response_format"]), normalized(t, `{"type":"json_schema","json_schema":{"name":"report","schema":`+weatherSchema+`,"strict":true}}`); got != want {
			t.Errorf("upstream response_format = %s\nwant %s", got, want)
		}

		// Per chat, streamed: the calls come as deltas in OpenAI's shape
		// and are stored with the turn.
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls, ArgPiece: 3})
		events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{
			"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools(),
		}))
		if events[len(events)-1].raw != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %v", events)
		}
		calls, text, finish := streamedToolCalls(t, events)
		if got, want := jsonOf(calls), jsonOf(wantToolCalls()); got != want {
			t.Errorf("streamed tool calls = %s\nwant %s", got, want)
		}
		if text != "" || finish != "tool_calls" {
			t.Errorf("streamed text %q, finish_reason %q", text, finish)
		}
		conv := events[0].data["conversationId"].(string)

		// Continue with the tools' results: stored, then sent upstream in order.
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": conv, "tools": weatherTools(),
			"messages": []any{
				map[string]any{"role": "tool", "toolCallId": "call_paris", "content": "18C and sunny"},
				map[string]any{"role": "tool", "toolCallId": "call_now", "content": "noon"},
			},
		})
		want := `[{"role":"system","content":"You are a test."},
			{"role":"user","content":"weather in Paris?"},
			{"role":"assistant","tool_calls":` + jsonOf(wantToolCalls()) + `},
			{"role":"tool","content":"18C and sunny","tool_call_id":"call_paris"},
			{"role":"tool","content":"noon","tool_call_id":"call_now"}]`
		if got := jsonOf(lastUpstreamBody(t, h)["messages"]); got != normalized(t, want) {
			t.Errorf("upstream messages = %s\nwant %s", got, normalized(t, want))
		}
		cv := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
		msgs := cv["messages"].([]any)
		if len(msgs) != 5 {
			t.Fatalf("stored messages = %v", msgs)
		}
		if got, want := jsonOf(msgs[1].(map[string]any)["toolCalls"]), jsonOf(wantToolCalls()); got != want {
			t.Errorf("stored toolCalls = %s\nwant %s", got, want)
		}
		if m := msgs[1].(map[string]any); m["finishReason"] != "tool_calls" || m["content"] != "" {
			t.Errorf("stored reply = %v", m)
		}
		for i, id := range map[int]string{2: "call_paris", 3: "call_now"} {
			if m := msgs[i].(map[string]any); m["role"] != "tool" || m["toolCallId"] != id {
				t.Errorf("stored message %d = %v, want the tool result of %s", i, m, id)
			}
		}
	})
}

func TestToolsClientHistory(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		// A stateless caller sends the whole exchange itself.
		got := h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "tools": weatherTools(), "messages": []any{
				userMessage("weather in Paris?"),
				map[string]any{"role": "assistant", "content": "Checking.", "toolCalls": wantToolCalls()[:1]},
				map[string]any{"role": "tool", "toolCallId": "call_paris", "content": "18C"},
			},
		})
		msg := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		if msg["content"] != "echo: weather in Paris?" {
			t.Errorf("message = %v", msg)
		}
		if _, ok := msg["tool_calls"]; ok {
			t.Errorf("a reply without tool calls has tool_calls: %v", msg)
		}
		want := `[{"role":"user","content":"weather in Paris?"},
			{"role":"assistant","content":"Checking.","tool_calls":` + jsonOf(wantToolCalls()[:1]) + `},
			{"role":"tool","content":"18C","tool_call_id":"call_paris"}]`
		if got := jsonOf(lastUpstreamBody(t, h)["messages"]); got != normalized(t, want) {
			t.Errorf("upstream messages = %s\nwant %s", got, normalized(t, want))
		}
	})
}

// TestToolCallsOfAnyName: a reply's tool call goes back as it came, also
// when its name is none a tool could be declared with (open models behind
// vLLM or Ollama call "repo_browser.search"): Parley answered such a call,
// then refused the history that sent it back, and the loop could not go on.
func TestToolCallsOfAnyName(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "repo_browser.search", Arguments: `{"q":"x"}`}}})
		first := h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "tools": weatherTools(), "messages": []any{userMessage("find x")}})
		calls := first["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["tool_calls"].([]any)
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "tools": weatherTools(), "messages": []any{
				userMessage("find x"),
				map[string]any{"role": "assistant", "tool_calls": calls},
				map[string]any{"role": "tool", "toolCallId": "call_1", "content": "found"},
			}})
		sent := lastUpstreamBody(t, h)["messages"].([]any)[1].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)
		if name := sent["function"].(map[string]any)["name"]; name != "repo_browser.search" {
			t.Errorf("the call went back as %v; want it as it came", sent)
		}
	})
}

func TestToolsAnthropic(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		for _, streamed := range []bool{false, true} {
			t.Run(fmt.Sprint("stream=", streamed), func(t *testing.T) {
				h.up.Enqueue(llmtest.Behavior{Reply: "Checking.", ToolCalls: fakeCalls, ArgPiece: 4})
				req := map[string]any{
					"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools(),
					"toolChoice":     map[string]any{"type": "function", "function": map[string]any{"name": "weather"}},
					"responseFormat": map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "report", "schema": json.RawMessage(weatherSchema)}},
					"debug":          true,
				}
				path := "/api/v1/chats/" + w.anthropicChat + "/completions"
				var conv string
				var debug map[string]any
				if streamed {
					events := readSSE(t, stream(t, h, path, req))
					calls, text, finish := streamedToolCalls(t, events)
					if got, want := jsonOf(calls), jsonOf(wantToolCalls()); got != want {
						t.Errorf("streamed tool calls = %s\nwant %s", got, want)
					}
					if text != "Checking." || finish != "tool_calls" {
						t.Errorf("streamed text %q, finish_reason %q", text, finish)
					}
					conv = events[0].data["conversationId"].(string)
					debug, _ = events[len(events)-2].data["debug"].(map[string]any)
				} else {
					got := h.must(200, "POST", path, h.admin, req)
					choice := got["choices"].([]any)[0].(map[string]any)
					msg := choice["message"].(map[string]any)
					if got, want := jsonOf(msg["tool_calls"]), jsonOf(wantToolCalls()); got != want {
						t.Errorf("message.tool_calls = %s\nwant %s", got, want)
					}
					if msg["content"] != "Checking." || choice["finish_reason"] != "tool_calls" {
						t.Errorf("choice = %v", choice)
					}
					conv = got["conversationId"].(string)
					debug, _ = got["debug"].(map[string]any)
				}
				body := lastUpstreamBody(t, h)
				wantTools := `[{"name":"weather","description":"Current weather in a city.","input_schema":` + weatherSchema + `},` +
					`{"name":"clock","input_schema":{"type":"object","properties":{}}}]`
				if got := jsonOf(body["tools"]); got != normalized(t, wantTools) {
					t.Errorf("upstream tools = %s\nwant %s", got, normalized(t, wantTools))
				}
				if got, want := jsonOf(body["tool_choice"]), `{"name":"weather","type":"tool"}`; got != want {
					t.Errorf("upstream tool_choice = %s, want %s", got, want)
				}
				sys := h.up.Last().Messages[0]
				if sys.Role != "system" || !strings.HasPrefix(sys.Content, anthropicSystem) || !strings.Contains(sys.Content, weatherSchema) {
					t.Errorf("upstream system = %q, want the chat's and the schema instruction", sys.Content)
				}
				// Debug shows the messages as Anthropic got them: the
				// schema instruction is a system message of its own.
				if debug == nil {
					t.Fatal("debug: true, but no debug in the response")
				}
				var debugSystem strings.Builder
				var roles []string
				for _, m := range debug["messages"].([]any) {
					m := m.(map[string]any)
					roles = append(roles, m["role"].(string))
					if m["role"] == "system" {
						debugSystem.WriteString(m["content"].(string))
					}
				}
				if debugSystem.String() != sys.Content || strings.Join(roles, ",") != "system,system,user" {
					t.Errorf("debug messages %v with system %q; want the upstream's system %q", roles, debugSystem.String(), sys.Content)
				}
				if provider := debug["provider"].(map[string]any); provider["id"] != w.anthropic || provider["type"] != "anthropic" || debug["model"] != "claude-fake" {
					t.Errorf("debug provider %v, model %v", provider, debug["model"])
				}
				if tm := debug["timings"].(map[string]any); !(tm["firstByteMs"].(float64) > 0 && tm["totalMs"].(float64) >= tm["firstByteMs"].(float64)) {
					t.Errorf("debug timings = %v", tm)
				}

				// The results go back as one user turn of tool_result blocks,
				// after the assistant's tool_use blocks.
				h.must(200, "POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, map[string]any{
					"conversationId": conv, "tools": weatherTools(), "messages": []any{
						map[string]any{"role": "tool", "toolCallId": "call_paris", "content": "18C"},
						map[string]any{"role": "tool", "toolCallId": "call_now", "content": "noon"},
						userMessage("thanks"),
					},
				})
				want := `[{"role":"user","content":[{"type":"text","text":"weather in Paris?"}]},
					{"role":"assistant","content":[{"type":"text","text":"Checking."},
						{"type":"tool_use","id":"call_paris","name":"weather","input":{"city":"Paris"}},
						{"type":"tool_use","id":"call_now","name":"clock","input":{}}]},
					{"role":"user","content":[
						{"type":"tool_result","tool_use_id":"call_paris","content":[{"type":"text","text":"18C"}]},
						{"type":"tool_result","tool_use_id":"call_now","content":[{"type":"text","text":"noon"}]}]},
					{"role":"user","content":[{"type":"text","text":"thanks"}]}]`
				if got := jsonOf(lastUpstreamBody(t, h)["messages"]); got != normalized(t, want) {
					t.Errorf("upstream messages = %s\nwant %s", got, normalized(t, want))
				}
			})
		}
	})
}

// TestToolCallCutOff: a reply cut off while the model wrote a tool call,
// by the token limit or by a refusal (the provider's filter, or Anthropic's
// model declining midway), comes back as the provider sent it (finish
// "length" or "content_filter", the call's arguments as far as they went),
// and its turn is stored without that call. Stored, the call had to be
// answered before the conversation could go on, and an anthropic provider
// refused the history (a call's input must be a JSON object): the
// conversation could not be continued at all. A reply Anthropic's model
// refused keeps no call at all (its turn is not sent to Anthropic again,
// so no result could go with one): the conversation goes on with a user
// message.
func TestToolCallCutOff(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		for _, tc := range []struct {
			name, chat   string
			streamed     bool
			stop, finish string // the fake's finish reason, and Parley's
		}{
			{"openai-compatible/json", w.openaiChat, false, "length", "length"},
			{"openai-compatible/stream", w.openaiChat, true, "length", "length"},
			{"anthropic/stream", w.anthropicChat, true, "length", "length"}, // Anthropic stops a tool_use block midway only in a stream's deltas
			{"openai-compatible/stream/filtered", w.openaiChat, true, "content_filter", "content_filter"},
			{"anthropic/stream/refusal", w.anthropicChat, true, "refusal", "content_filter"}, // keeps no call
		} {
			t.Run(tc.name, func(t *testing.T) {
				cut := llmtest.ToolCall{ID: "call_cut", Name: "weather", Arguments: `{"city":"Par`}
				h.up.Enqueue(llmtest.Behavior{Reply: "Checking.", ToolCalls: []llmtest.ToolCall{fakeCalls[1], cut}, FinishReason: tc.stop, ArgPiece: 4})
				path := "/api/v1/chats/" + tc.chat + "/completions"
				req := map[string]any{"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools()}
				var calls []any
				var finish, conv string
				if tc.streamed {
					events := readSSE(t, stream(t, h, path, req))
					calls, _, finish = streamedToolCalls(t, events)
					conv = events[0].data["conversationId"].(string)
				} else {
					got := h.must(200, "POST", path, h.admin, req)
					choice := got["choices"].([]any)[0].(map[string]any)
					calls, _ = choice["message"].(map[string]any)["tool_calls"].([]any)
					finish, _ = choice["finish_reason"].(string)
					conv = got["conversationId"].(string)
				}
				if len(calls) != 2 || finish != tc.finish {
					t.Fatalf("tool calls %s, finish_reason %q; want both calls as sent, and %s", jsonOf(calls), finish, tc.finish)
				}
				msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
				reply := msgs[len(msgs)-1].(map[string]any)
				want, next := `[{"function":{"arguments":"{}","name":"clock"},"id":"call_now","type":"function"}]`, []any{
					map[string]any{"role": "tool", "toolCallId": "call_now", "content": "noon"}, userMessage("go on")}
				if tc.stop == "refusal" {
					want, next = "null", []any{userMessage("go on")}
				}
				if got := jsonOf(reply["toolCalls"]); got != want || reply["finishReason"] != tc.finish {
					t.Errorf("stored reply's toolCalls = %s (finish %v), want %s", got, reply["finishReason"], want)
				}
				// The whole call answered, the conversation goes on.
				h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "tools": weatherTools(), "messages": next})
			})
		}
	})
}

func TestToolsValidation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		hi := userMessage("hi")
		call := func(id string) map[string]any {
			return map[string]any{"id": id, "type": "function", "function": map[string]any{"name": "weather", "arguments": "{}"}}
		}
		fn := func(name string) map[string]any {
			return map[string]any{"type": "function", "function": map[string]any{"name": name}}
		}
		tooMany := make([]any, 129)
		for i := range tooMany {
			tooMany[i] = fn(fmt.Sprint("f", i))
		}
		tests := []struct {
			name  string
			body  map[string]any
			field string
		}{
			{"tool without toolCallId", map[string]any{"messages": []any{hi, map[string]any{"role": "tool", "content": "x"}}}, "messages[1].toolCallId"},
			{"tool without content", map[string]any{"messages": []any{hi, map[string]any{"role": "tool", "toolCallId": "call_1"}}}, "messages[1].content"},
			{"tool answering no call", map[string]any{"messages": []any{hi, map[string]any{"role": "tool", "toolCallId": "call_1", "content": "x"}}}, "messages[1].toolCallId"},
			{"tool answering another call", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("call_1")}},
				map[string]any{"role": "tool", "toolCallId": "call_2", "content": "x"}}}, "messages[2].toolCallId"},
			// A call must be answered before any other message: OpenAI and
			// Anthropic refuse it after the call, Parley before.
			{"user message after an unanswered call", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("call_1")}}, hi}}, "messages[2]"},
			{"one of two calls answered", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("call_1"), call("call_2")}},
				map[string]any{"role": "tool", "toolCallId": "call_1", "content": "x"}, hi}}, "messages[3]"},
			{"assistant message after an unanswered call", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("call_1")}},
				map[string]any{"role": "assistant", "content": "never mind"}, hi}}, "messages[2]"},
			{"a call unanswered at the end", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("call_1")}}}}, "messages"},
			{"toolCallId on a user message", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x", "toolCallId": "call_1"}}}, "messages[0].toolCallId"},
			{"toolCalls on a user message", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x", "toolCalls": []any{call("c")}}}}, "messages[0].toolCalls"},
			{"tool call without id", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{call("")}}}}, "messages[1].toolCalls[0].id"},
			{"tool call of another type", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{
				map[string]any{"id": "c", "type": "custom", "function": map[string]any{"name": "weather", "arguments": "{}"}}}}}}, "messages[1].toolCalls[0].type"},
			{"tool call with a name too long", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{
				map[string]any{"id": "c", "type": "function", "function": map[string]any{"name": strings.Repeat("n", 257), "arguments": "{}"}}}}}}, "messages[1].toolCalls[0].function.name"},
			{"unknown tool call field", map[string]any{"messages": []any{hi, map[string]any{"role": "assistant", "toolCalls": []any{
				map[string]any{"id": "c", "type": "function", "function": map[string]any{"name": "w", "arguments": "{}"}, "index": 0}}}}}, "messages[1].toolCalls[0].index"},
			{"tool of another type", map[string]any{"messages": []any{hi}, "tools": []any{map[string]any{"type": "web_search", "function": map[string]any{"name": "w"}}}}, "tools[0].type"},
			{"tool name too long", map[string]any{"messages": []any{hi}, "tools": []any{fn(strings.Repeat("a", 65))}}, "tools[0].function.name"},
			{"tool name with a dot", map[string]any{"messages": []any{hi}, "tools": []any{fn("get.weather")}}, "tools[0].function.name"},
			{"duplicate tool names", map[string]any{"messages": []any{hi}, "tools": []any{fn("w"), fn("w")}}, "tools[1].function.name"},
			{"parameters not an object", map[string]any{"messages": []any{hi}, "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "w", "parameters": []any{1}}}}}, "tools[0].function.parameters"},
			{"unknown function field", map[string]any{"messages": []any{hi}, "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "w", "params": map[string]any{}}}}}, "tools[0].function.params"},
			{"129 tools", map[string]any{"messages": []any{hi}, "tools": tooMany}, "tools"},
			{"toolChoice without tools", map[string]any{"messages": []any{hi}, "toolChoice": "auto"}, "toolChoice"},
			{"toolChoice unknown mode", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": "always"}, "toolChoice"},
			{"toolChoice undeclared function", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": map[string]any{"type": "function", "function": map[string]any{"name": "x"}}}, "toolChoice"},
			{"toolChoice not a string or object", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": 1}, "toolChoice"},
			// The object form names a function: its name would be dropped.
			{"toolChoice object of mode auto", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": map[string]any{"type": "auto", "function": map[string]any{"name": "w"}}}, "toolChoice"},
			{"toolChoice object of mode none", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": map[string]any{"type": "none"}}, "toolChoice"},
			{"toolChoice with an unknown field", map[string]any{"messages": []any{hi}, "tools": []any{fn("w")}, "toolChoice": map[string]any{"type": "function", "function": map[string]any{"name": "w"}, "x": 1}}, "toolChoice"},
			{"responseFormat unknown type", map[string]any{"messages": []any{hi}, "responseFormat": map[string]any{"type": "xml"}}, "responseFormat.type"},
			{"json_schema without jsonSchema", map[string]any{"messages": []any{hi}, "responseFormat": map[string]any{"type": "json_schema"}}, "responseFormat.jsonSchema"},
			{"json_schema without schema", map[string]any{"messages": []any{hi}, "responseFormat": map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "r"}}}, "responseFormat.jsonSchema.schema"},
			{"json_schema schema not an object", map[string]any{"messages": []any{hi}, "responseFormat": map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "r", "schema": "object"}}}, "responseFormat.jsonSchema.schema"},
			{"jsonSchema with json_object", map[string]any{"messages": []any{hi}, "responseFormat": map[string]any{"type": "json_object", "jsonSchema": map[string]any{"name": "r", "schema": map[string]any{}}}}, "responseFormat.jsonSchema"},
			{"OpenAI's response_format with Parley's jsonSchema", map[string]any{"messages": []any{hi}, "response_format": map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "r", "schema": map[string]any{}}}}, "response_format.jsonSchema"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h.refusedByBoth(t, w, tt.body, tt.field)
			})
		}
		convs := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)
		if len(convs) != 0 {
			t.Errorf("refused completions stored %d conversations", len(convs))
		}
	})
}

// The ids a reply's tool calls carry are what a continuation answers:
// a tool message for an id the conversation's last reply did not call is
// refused.
func TestToolsContinuationChecksIDs(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls[:1]})
		conv := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("weather?")}, "tools": weatherTools(),
		})["conversationId"].(string)
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": conv, "messages": []any{map[string]any{"role": "tool", "toolCallId": "call_other", "content": "x"}},
		})
		if r.Status != 400 || !reflect.DeepEqual(r.JSON()["error"].(map[string]any)["details"], map[string]any{"field": "messages[0].toolCallId"}) {
			t.Errorf("answering an unknown call = %d %s, want 400 naming messages[0].toolCallId", r.Status, r.Body)
		}

		// Going on without answering the reply's call is refused before
		// the provider, which would refuse it, is paid for the prompt.
		before := h.up.Count()
		r = h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": conv, "messages": []any{userMessage("never mind, what about Rome?")},
		})
		want := "conversation " + conv + `'s last reply called tools that no tool message answers: "call_paris"; ` +
			`send a tool message (role "tool", toolCallId, content) for each call after it, before messages[0]`
		if r.Status != 400 || r.ErrorField() != "messages[0]" || r.ErrorMessage() != want {
			t.Errorf("a user message after an unanswered call = %d %s, want 400: %s", r.Status, r.Body, want)
		}
		if h.up.Count() != before {
			t.Error("the refused request reached the upstream")
		}
		// Answered, the conversation goes on.
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": conv, "messages": []any{map[string]any{"role": "tool", "toolCallId": "call_paris", "content": "18C"}, userMessage("and Rome?")},
		})
	})
}

// TestToolCallThoughtSignatures: Gemini's OpenAI-compatible API sends a
// thought signature with each tool call, as extra_content, and Gemini 3
// refuses a continuation whose assistant message lacks it. A reply's
// tool_calls show it (whole, and in the call's first streamed piece); a
// conversation stores it and sends it back with the call; a stateless
// caller sends it back in the assistant message's toolCalls, and anything
// but a JSON object there is a 400.
func TestToolCallThoughtSignatures(t *testing.T) {
	const sig = `{"google":{"thought_signature":"CiQBVKhc7sig"}}`
	signed := []llmtest.ToolCall{{ID: "function-call-1", Name: "weather", Arguments: `{"city":"Paris"}`, Extra: sig}}
	wantCalls := `[{"id":"function-call-1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"},"extra_content":` + sig + `}]`
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{ToolCalls: signed})
		got := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools()})
		msg := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		if got := jsonOf(msg["tool_calls"]); got != normalized(t, wantCalls) {
			t.Errorf("message.tool_calls = %s\nwant %s", got, normalized(t, wantCalls))
		}
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": got["conversationId"], "tools": weatherTools(),
			"messages": []any{map[string]any{"role": "tool", "toolCallId": "function-call-1", "content": "18C"}}})
		up := lastUpstreamBody(t, h)["messages"].([]any)
		if got := jsonOf(up[2].(map[string]any)["tool_calls"]); got != normalized(t, wantCalls) {
			t.Errorf("the stored reply went back upstream with tool_calls %s\nwant %s", got, normalized(t, wantCalls))
		}

		h.up.Enqueue(llmtest.Behavior{ToolCalls: signed})
		events := readSSE(t, stream(t, h, "/api/v1/chats/completions", map[string]any{
			"aiProviderId": w.provider, "messages": []any{userMessage("weather in Paris?")}, "tools": weatherTools()}))
		var pieces []string
		for _, ev := range events {
			if strings.Contains(ev.raw, "extra_content") {
				pieces = append(pieces, ev.raw)
			}
		}
		if len(pieces) != 1 || !strings.Contains(pieces[0], `"extra_content":`+sig) || !strings.Contains(pieces[0], `"id":"function-call-1"`) {
			t.Errorf("streamed chunks with extra_content: %q; want the call's first piece, with %s", pieces, sig)
		}

		var calls []any
		_ = json.Unmarshal([]byte(wantCalls), &calls)
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "tools": weatherTools(), "messages": []any{
				userMessage("weather in Paris?"),
				map[string]any{"role": "assistant", "toolCalls": calls},
				map[string]any{"role": "tool", "toolCallId": "function-call-1", "content": "18C"}}})
		up = lastUpstreamBody(t, h)["messages"].([]any)
		if got := jsonOf(up[1].(map[string]any)["tool_calls"]); got != normalized(t, wantCalls) {
			t.Errorf("a stateless assistant message went upstream with tool_calls %s\nwant %s", got, normalized(t, wantCalls))
		}

		bad := []any{map[string]any{"id": "function-call-1", "type": "function",
			"function": map[string]any{"name": "weather", "arguments": "{}"}, "extra_content": "sig"}}
		h.refusedByBoth(t, w, map[string]any{"messages": []any{userMessage("weather?"),
			map[string]any{"role": "assistant", "toolCalls": bad},
			map[string]any{"role": "tool", "toolCallId": "function-call-1", "content": "18C"}}},
			"messages[1].toolCalls[0].extra_content")
	})
}

// TestToolCallsOfOneChunkAreSplit: Ollama sends calls made together whole
// in one chunk, with the text before them; the OpenAI SDKs' stream
// accumulators read one call a chunk (and none in a chunk with text), so
// the stream gives the text, then each call in a chunk of its own.
func TestToolCallsOfOneChunkAreSplit(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.up.Enqueue(llmtest.Behavior{Deltas: []string{"Checking both."}, ToolCallsInOneChunk: true, ToolCalls: []llmtest.ToolCall{
		{ID: "call_a", Name: "weather", Arguments: `{"city":"Oslo"}`}, {ID: "call_b", Name: "weather", Arguments: `{"city":"Bergen"}`}}})
	events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("Weather?")},
		"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "weather", "parameters": map[string]any{"type": "object"}}}}}))
	var ids []any
	for _, ev := range events[:len(events)-1] {
		choices, _ := ev.data["choices"].([]any)
		for _, c := range choices {
			delta := c.(map[string]any)["delta"].(map[string]any)
			calls, _ := delta["tool_calls"].([]any)
			if len(calls) > 1 || len(calls) == 1 && delta["content"] != nil {
				t.Errorf("a chunk %v; want at most one call a chunk, and none beside text", delta)
			}
			for _, call := range calls {
				c := call.(map[string]any)
				fn := c["function"].(map[string]any)
				if c["index"] != float64(len(ids)) || fn["arguments"] == "" {
					t.Errorf("call %v; want index %d, whole", c, len(ids))
				}
				ids = append(ids, c["id"])
			}
		}
	}
	if !reflect.DeepEqual(ids, []any{"call_a", "call_b"}) {
		t.Errorf("streamed calls %v; want call_a, then call_b", ids)
	}
}
