package rest_test

// What an upstream sends that OpenAI would not, and what each provider
// refuses, met before it reaches the client.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestEmptyContentIsSentToOpenAIWire: the chat completions API requires
// content on user, system and tool messages and on an assistant message
// without tool calls. An empty tool result, an empty user message and a
// stored reply that came back empty (content_filter, a refusal, a length
// stop before any text) must go upstream with "content": "", not without
// content, or every continuation of the conversation is refused (502).
func TestEmptyContentIsSentToOpenAIWire(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	checkContent := func(step string) {
		t.Helper()
		for i, m := range lastUpstreamBody(t, h)["messages"].([]any) {
			mm := m.(map[string]any)
			content, ok := mm["content"]
			_, calls := mm["tool_calls"]
			switch {
			case !ok && !calls:
				t.Errorf("%s: upstream messages[%d] (%v) has no content: %s", step, i, mm["role"], h.up.Last().RawBody)
			case content == nil && !calls:
				t.Errorf("%s: upstream messages[%d] has content null and no tool calls", step, i)
			}
		}
	}

	h.up.Enqueue(llmtest.Behavior{Deltas: []string{""}, FinishReason: "content_filter"})
	conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})["conversationId"].(string)
	h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("again")}})
	checkContent("after an empty reply")

	h.up.Enqueue(llmtest.Behavior{ToolCalls: fakeCalls})
	conv = h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("")}, "tools": weatherTools()})["conversationId"].(string)
	checkContent("an empty user message")
	h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "tools": weatherTools(), "messages": []any{
		map[string]any{"role": "tool", "toolCallId": "call_paris", "content": ""},
		map[string]any{"role": "tool", "toolCallId": "call_now", "content": "12:00"}}})
	checkContent("an empty tool result")
	// Streamed the same.
	readSSE(t, stream(t, h, path, map[string]any{"conversationId": conv, "messages": []any{userMessage("and?")}}))
	checkContent("streamed")
}

// TestToolCallWithoutIDGetsOne: an OpenAI-compatible server that answers
// a tool call without an id (not streamed) must not leave a reply whose
// call cannot be answered: streamed, such a call gets an id; not streamed
// it came back, and was stored, with "id": "", and the tool message that
// answers it was refused (toolCallId is required).
func TestToolCallWithoutIDGetsOne(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Body: `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"tool_calls":[{"type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":"tool_calls"}]}`})
	got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}, "tools": weatherTools()})
	calls := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["tool_calls"].([]any)
	id, _ := calls[0].(map[string]any)["id"].(string)
	if !strings.HasPrefix(id, "call_") {
		t.Fatalf("tool call id = %q, want one Parley made (call_...)", id)
	}
	h.must(200, "POST", path, h.admin, map[string]any{"conversationId": got["conversationId"], "tools": weatherTools(),
		"messages": []any{map[string]any{"role": "tool", "toolCallId": id, "content": "-3"}}})
}

// TestStreamedToolCallIDAndNameOnce: the README promises that the first
// delta of each tool call has its id, type and name and later ones only
// more arguments, as OpenAI streams them. An upstream that repeats the id
// and name on every piece (some OpenAI-compatible servers do) must not
// have them repeated to the client, whose SDK may append the pieces.
func TestStreamedToolCallIDAndNameOnce(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	chunk := func(delta string, finish string) string {
		return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	piece := func(args string) string {
		return chunk(`{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":"`+args+`"}}]}`, "null")
	}
	body := chunk(`{"role":"assistant","content":null}`, "null") + piece("") + piece(`{\"city\":`) + piece(`\"Oslo\"}`) +
		chunk(`{}`, `"tool_calls"`) + "data: [DONE]\n\n"
	h.up.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
	events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("x")}, "tools": weatherTools()}))
	calls, _, finish := streamedToolCalls(t, events) // fails on a repeated id
	want := `[{"function":{"arguments":"{\"city\":\"Oslo\"}","name":"weather"},"id":"call_a","type":"function"}]`
	if got := jsonOf(calls); got != want || finish != "tool_calls" {
		t.Errorf("tool calls = %s (%s), want %s", got, finish, want)
	}
	for _, ev := range events[2:] {
		if ev.data == nil || len(ev.data["choices"].([]any)) == 0 {
			continue
		}
		tcs, _ := ev.data["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)["tool_calls"].([]any)
		for _, tc := range tcs {
			if _, ok := tc.(map[string]any)["function"].(map[string]any)["name"]; ok {
				t.Errorf("a later piece repeats the name: %s", ev.raw)
			}
		}
	}
}

// TestAnthropicWhitespaceStop: Anthropic refuses a stop sequence that is
// only whitespace ("stop_sequences: each stop sequence must contain
// non-whitespace"), and stop: "\n" is a common request. As with
// temperature above 1, the caller should get a 400 naming stop, not the
// provider's refusal as a 502 upstream_error.
func TestAnthropicWhitespaceStop(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.anthropicWorld()
	for _, stop := range []any{"\n", []any{"END", " \t"}} {
		before := h.up.Count()
		r := h.call("POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}, "stop": stop})
		if r.Status != 400 || r.ErrorCode() != "invalid_request" {
			t.Errorf("stop %q: %d %s, want 400 invalid_request", stop, r.Status, r.Body)
		} else if f := r.JSON()["error"].(map[string]any)["details"].(map[string]any)["field"]; f != "stop" {
			t.Errorf("stop %q: details.field = %v, want stop", stop, f)
		}
		if h.up.Count() != before {
			t.Errorf("stop %q reached the upstream", stop)
		}
	}
	// OpenAI-wire providers take it.
	h.must(200, "POST", "/api/v1/chats/"+w.openaiChat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}, "stop": "\n"})
}

// TestWholeReplyWithoutFinishReason: a reply that is not streamed arrives
// whole, so one without a finish reason (an OpenAI-compatible server that
// leaves finish_reason out, Anthropic's stop_reason null) is complete; it
// must not reach the client, and the stored turn, as finish_reason "",
// which is none of OpenAI's values.
func TestWholeReplyWithoutFinishReason(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.anthropicWorld()
	for chat, body := range map[string]string{
		w.openaiChat:    `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`,
		w.anthropicChat: `{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`,
	} {
		h.up.Enqueue(llmtest.Behavior{Body: body})
		got := h.must(200, "POST", "/api/v1/chats/"+chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
		if f := got["choices"].([]any)[0].(map[string]any)["finish_reason"]; f != "stop" {
			t.Errorf("%s: finish_reason = %q, want stop", chat, f)
		}
		cv := h.must(200, "GET", "/api/v1/conversations/"+got["conversationId"].(string), h.admin, nil)
		if f := cv["messages"].([]any)[1].(map[string]any)["finishReason"]; f != "stop" {
			t.Errorf("%s: stored finishReason = %v, want stop", chat, f)
		}
	}
}

// TestDebugShowsTheResolvedModel: debug shows "the resolved provider and
// model" (DESIGN §4): the model Parley chose (request, else chat, else
// the provider's default) and sent. The response's model already says
// which one the provider says answered ("gpt-4o-2024-08-06" for
// "gpt-4o"; for Azure, the model behind the deployment name), so a debug
// that repeats it hides what was resolved.
func TestDebugShowsTheResolvedModel(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.must(200, "PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"model": "gpt-4o"})
	h.up.Enqueue(llmtest.Behavior{Model: "gpt-4o-2024-08-06"})
	got := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}, "debug": true})
	if got["model"] != "gpt-4o-2024-08-06" {
		t.Errorf("model = %v, want the provider's", got["model"])
	}
	if m := got["debug"].(map[string]any)["model"]; m != "gpt-4o" {
		t.Errorf("debug.model = %v, want the resolved gpt-4o (the chat's)", m)
	}
}

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
	if got := streamedRefusal(events); got != refusal {
		t.Errorf("streamed refusal = %q, want %q", got, refusal)
	}
}

// TestErrorChunkEndsTheStreamWithAnError: OpenRouter reports a failure
// that comes once a stream began as a chunk with an error object and
// finish_reason "error". The client must get an upstream_error event, as
// for any error after the stream began, and the turn must not be stored:
// read as a finished reply, the cut-off text went to the client with
// finish_reason "error" and into the conversation as complete. A whole
// reply that ends with finish_reason "error" is a 502.
func TestErrorChunkEndsTheStreamWithAnError(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
	stored := []string{"user: first", "assistant: echo: first"}

	h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultErrorChunk, AfterDeltas: 2})
	e, events := streamError(t, stream(t, h, path, map[string]any{"conversationId": conv, "messages": []any{userMessage("one two three")}}))
	if e["code"] != "upstream_error" || !strings.Contains(fmt.Sprint(e["message"]), "Provider disconnected unexpectedly") {
		t.Fatalf("the stream's error = %v, want an upstream_error with the provider's message", e)
	}
	for _, ev := range events {
		if strings.Contains(ev.raw, `"finish_reason":"error"`) {
			t.Errorf("the client got %s", ev.raw)
		}
	}
	if got := conversationMessages(t, h, conv); strings.Join(got, "|") != strings.Join(stored, "|") {
		t.Errorf("after the failed stream: %q, want %q", got, stored)
	}

	h.up.Enqueue(llmtest.Behavior{FinishReason: "error"})
	if r := h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("again")}}); r.Status != 502 || r.ErrorCode() != "upstream_error" {
		t.Errorf("a whole reply with finish_reason error: %d %s, want 502 upstream_error", r.Status, r.Body)
	}
	if got := conversationMessages(t, h, conv); strings.Join(got, "|") != strings.Join(stored, "|") {
		t.Errorf("after the failed reply: %q, want %q", got, stored)
	}
}

// TestContentPartsAreTheReply: Mistral's reasoning models send content as
// a list of typed parts (thinking, then text). The client gets the text,
// streamed and not, and the conversation stores it; the thinking is left
// out. Streamed, such a reply failed (502 "could not read"); whole, it
// came back empty.
func TestContentPartsAreTheReply(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	b := llmtest.Behavior{Reasoning: "The user says hi.", ContentParts: true}
	h.up.Enqueue(b)
	got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")}})
	if c := got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]; c != "echo: hi" {
		t.Errorf("content = %v, want echo: hi", c)
	}
	h.up.Enqueue(b)
	events := readSSE(t, stream(t, h, path, map[string]any{"conversationId": got["conversationId"], "messages": []any{userMessage("there")}}))
	_, text, finish := streamedToolCalls(t, events)
	if text != "echo: there" || finish != "stop" {
		t.Errorf("streamed %q (%s), want %q (stop)", text, finish, "echo: there")
	}
	want := []string{"user: hi", "assistant: echo: hi", "user: there", "assistant: echo: there"}
	if got := conversationMessages(t, h, got["conversationId"].(string)); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stored %q, want %q", got, want)
	}
}
