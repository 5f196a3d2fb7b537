package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
)

// anthropicWorld is a project with an anthropic provider and an
// openai-compatible one, both on the fake upstream, and a chat on each with
// the same system message.
type anthropicWorld struct {
	project, anthropic, openai, anthropicChat, openaiChat string
}

const anthropicSystem = "You are a careful test."

func (h *harness) anthropicWorld() anthropicWorld {
	h.t.Helper()
	var w anthropicWorld
	w.project = h.project(h.admin, "anthropic")
	w.anthropic = h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
		"projectId": w.project, "name": "claude", "type": "anthropic", "baseUrl": h.up.URL(),
		"defaultModel": "claude-fake", "apiKey": upstreamKey,
	})["id"].(string)
	w.openai = h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
		"projectId": w.project, "name": "gpt", "type": "openai-compatible", "baseUrl": h.up.URL(),
		"defaultModel": "claude-fake", "apiKey": upstreamKey,
	})["id"].(string)
	w.anthropicChat = h.chat(h.admin, w.project, w.anthropic, map[string]any{"systemMessage": anthropicSystem})
	w.openaiChat = h.chat(h.admin, w.project, w.openai, map[string]any{"systemMessage": anthropicSystem})
	return w
}

// shape replaces every leaf of a decoded JSON value by its type, so two
// responses compare equal when only their values differ.
func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = shape(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = shape(x)
		}
		return out
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// checkAnthropicRequest checks that the last upstream request was a
// Messages API call made with the provider's key, the chat's system
// message as the system parameter and the user's message.
func checkAnthropicRequest(t *testing.T, h *harness, prompt string, stream bool) llmtest.Request {
	t.Helper()
	r := h.up.Last()
	if r.Protocol != llmtest.Anthropic || r.Path != "/v1/messages" {
		t.Fatalf("the upstream got %s %s (%s), want the Anthropic Messages API at /v1/messages", r.Method, r.Path, r.Protocol)
	}
	if got := r.Header.Get("X-Api-Key"); got != upstreamKey {
		t.Errorf("x-api-key = %q, want the provider's key", got)
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		t.Errorf("an Anthropic request carries Authorization %q", auth)
	}
	if r.Header.Get("Anthropic-Version") == "" {
		t.Error("no anthropic-version header")
	}
	if r.Stream != stream {
		t.Errorf("upstream stream = %v, want %v", r.Stream, stream)
	}
	if got := fmt.Sprint(r.Body["system"]); !strings.Contains(got, anthropicSystem) {
		t.Errorf("system = %s, want the chat's system message", got)
	}
	msgs, _ := r.Body["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("upstream messages = %v, want the user's message alone (the system message goes in system)", r.Body["messages"])
	}
	if m := r.Messages[len(r.Messages)-1]; m.Role != "user" || m.Content != prompt {
		t.Errorf("upstream message = %+v, want user: %s", m, prompt)
	}
	if r.Model != "claude-fake" {
		t.Errorf("upstream model = %q, want the provider's default", r.Model)
	}
	return r
}

func TestAnthropicCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		const prompt = "Hello Claude, how are you?"
		body := func() map[string]any { return map[string]any{"messages": []any{userMessage(prompt)}} }

		got := h.must(200, "POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, body())
		r := checkAnthropicRequest(t, h, prompt, false)
		if mt := r.Body["max_tokens"]; mt != float64(llm.DefaultAnthropicMaxTokens) {
			t.Errorf("max_tokens = %v, want the documented default %d", mt, llm.DefaultAnthropicMaxTokens)
		}
		if got["object"] != "chat.completion" || got["model"] != "claude-fake" {
			t.Errorf("object/model = %v/%v", got["object"], got["model"])
		}
		choice := got["choices"].([]any)[0].(map[string]any)
		if msg := choice["message"].(map[string]any); msg["role"] != "assistant" || msg["content"] != llmtest.EchoReply(prompt) {
			t.Errorf("message = %v", msg)
		}
		if choice["finish_reason"] != "stop" {
			t.Errorf("finish_reason = %v, want stop (end_turn mapped)", choice["finish_reason"])
		}
		usage := got["usage"].(map[string]any)
		wantPrompt := float64(llmtest.PromptTokens(anthropicSystem, prompt))
		wantCompletion := float64(len(llmtest.Deltas(llmtest.EchoReply(prompt))))
		if usage["prompt_tokens"] != wantPrompt || usage["completion_tokens"] != wantCompletion || usage["total_tokens"] != wantPrompt+wantCompletion {
			t.Errorf("usage = %v, want input_tokens %v and output_tokens %v mapped", usage, wantPrompt, wantCompletion)
		}
		if !strings.HasPrefix(got["conversationId"].(string), "cnv_") || !strings.HasPrefix(got["messageId"].(string), "msg_") {
			t.Errorf("ids = %v %v", got["conversationId"], got["messageId"])
		}

		// The same call through an openai-compatible provider has the same shape.
		other := h.must(200, "POST", "/api/v1/chats/"+w.openaiChat+"/completions", h.admin, body())
		if h.up.Last().Protocol != llmtest.OpenAI {
			t.Fatal("the openai-compatible chat did not call the OpenAI wire protocol")
		}
		if !reflect.DeepEqual(shape(got), shape(other)) {
			t.Errorf("the responses differ in shape:\nanthropic: %v\nopenai:    %v", shape(got), shape(other))
		}

		// Sampling parameters are mapped; maxTokens replaces the default,
		// and a reply cut by it finishes with "length".
		b := body()
		b["maxTokens"], b["temperature"], b["topP"], b["stop"] = 2, 0.3, 0.8, []string{"END", "STOP"}
		got = h.must(200, "POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, b)
		r = checkAnthropicRequest(t, h, prompt, false)
		if r.Body["max_tokens"] != 2.0 || r.Body["temperature"] != 0.3 || r.Body["top_p"] != 0.8 || fmt.Sprint(r.Body["stop_sequences"]) != "[END STOP]" {
			t.Errorf("upstream max_tokens %v temperature %v top_p %v stop_sequences %v", r.Body["max_tokens"], r.Body["temperature"], r.Body["top_p"], r.Body["stop_sequences"])
		}
		choice = got["choices"].([]any)[0].(map[string]any)
		if choice["finish_reason"] != "length" || choice["message"].(map[string]any)["content"] != "echo: Hello " {
			t.Errorf("a reply cut at max_tokens = %v, want finish_reason length (max_tokens mapped)", choice)
		}
		if n := got["usage"].(map[string]any)["completion_tokens"]; n != 2.0 {
			t.Errorf("completion_tokens = %v, want 2", n)
		}
	})
}

func TestAnthropicStreamingCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		const prompt = "stream me a few words"
		read := func(chat string) []sseEvent {
			t.Helper()
			res := stream(t, h, "/api/v1/chats/"+chat+"/completions", map[string]any{"messages": []any{userMessage(prompt)}})
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			return readSSE(t, res)
		}
		events := read(w.anthropicChat)
		r := checkAnthropicRequest(t, h, prompt, true)
		if mt := r.Body["max_tokens"]; mt != float64(llm.DefaultAnthropicMaxTokens) {
			t.Errorf("max_tokens = %v, want the documented default", mt)
		}

		n := len(events)
		if n < 4 || events[n-1].raw != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %v", events)
		}
		first := events[0].data
		if !strings.HasPrefix(fmt.Sprint(first["messageId"]), "msg_") || !strings.HasPrefix(fmt.Sprint(first["conversationId"]), "cnv_") {
			t.Errorf("first chunk lacks ids: %v", first)
		}
		var text strings.Builder
		var finishes []string
		for i, ev := range events[:n-1] {
			if ev.data["object"] != "chat.completion.chunk" || ev.data["id"] != first["id"] || ev.data["model"] != "claude-fake" {
				t.Fatalf("event %d is not a chunk of this completion: %s", i, ev.raw)
			}
			if _, ok := ev.data["usage"]; ok && i != n-2 {
				t.Errorf("usage in chunk %d, before the last: %s", i, ev.raw)
			}
			for _, c := range ev.data["choices"].([]any) {
				cm := c.(map[string]any)
				if s, ok := cm["delta"].(map[string]any)["content"].(string); ok {
					text.WriteString(s)
				}
				if fr, ok := cm["finish_reason"].(string); ok {
					finishes = append(finishes, fr)
				}
			}
		}
		if got, want := text.String(), llmtest.EchoReply(prompt); got != want {
			t.Errorf("streamed text = %q, want %q", got, want)
		}
		if fmt.Sprint(finishes) != "[stop]" {
			t.Errorf("finish reasons = %v, want one stop", finishes)
		}
		usage, _ := events[n-2].data["usage"].(map[string]any)
		wantPrompt := float64(llmtest.PromptTokens(anthropicSystem, prompt))
		wantCompletion := float64(len(llmtest.Deltas(llmtest.EchoReply(prompt))))
		if usage == nil || usage["prompt_tokens"] != wantPrompt || usage["completion_tokens"] != wantCompletion || usage["total_tokens"] != wantPrompt+wantCompletion {
			t.Errorf("last chunk usage = %v, want message_start's input_tokens %v and message_delta's output_tokens %v", usage, wantPrompt, wantCompletion)
		}

		// The same stream from an openai-compatible provider: event for
		// event the same shape.
		other := read(w.openaiChat)
		if len(other) != n {
			t.Fatalf("the openai-compatible stream has %d events, the anthropic one %d", len(other), n)
		}
		for i := range events {
			if events[i].raw == "[DONE]" {
				if other[i].raw != "[DONE]" {
					t.Errorf("event %d: [DONE] against %s", i, other[i].raw)
				}
				continue
			}
			if a, o := shape(events[i].data), shape(other[i].data); !reflect.DeepEqual(a, o) {
				t.Errorf("event %d differs in shape:\nanthropic: %v\nopenai:    %v", i, a, o)
			}
		}

		// The turn was stored like any other.
		cv := h.must(200, "GET", "/api/v1/conversations/"+first["conversationId"].(string), h.admin, nil)
		msgs := cv["messages"].([]any)
		if len(msgs) != 2 || msgs[1].(map[string]any)["content"] != llmtest.EchoReply(prompt) {
			t.Errorf("stored conversation = %v", msgs)
		}
	})
}

// TestAnthropicTemperatureRange: Anthropic takes temperatures of 0 to 1
// only, so 1.5 is a 400 naming temperature, before anything goes upstream
// or is stored; the same temperature through an OpenAI-wire provider
// (0 to 2) goes through.
func TestAnthropicTemperatureRange(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		body := map[string]any{"messages": []any{userMessage("warm")}, "temperature": 1.5}
		before := h.up.Count()
		r := h.call("POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, body)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" {
			t.Fatalf("status %d %s, want 400", r.Status, r.Body)
		}
		details, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
		if details["field"] != "temperature" || !strings.Contains(r.ErrorMessage(), "between 0 and 1") {
			t.Errorf("error %s, want one naming temperature and Anthropic's range", r.Body)
		}
		if h.up.Count() != before {
			t.Error("the refused call reached the upstream")
		}
		var stored int64
		if err := h.app.Store.DB().Raw("SELECT count(*) FROM conversations WHERE chat_id = ?", w.anthropicChat).Row().Scan(&stored); err != nil || stored != 0 {
			t.Errorf("the refused call stored %d conversations (%v)", stored, err)
		}
		h.must(200, "POST", "/api/v1/chats/"+w.openaiChat+"/completions", h.admin, body)
		if got := h.up.Last().Body["temperature"]; got != 1.5 {
			t.Errorf("temperature sent to the OpenAI-wire provider = %v, want 1.5", got)
		}
	})
}

// TestAnthropicEmptyText: Anthropic refuses empty text blocks, which the
// OpenAI wire takes. A reply that came back empty is stored, and the
// conversation must go on: its empty turn is left out upstream, as is an
// empty user message. A request with nothing but a system message is a
// 400 before the upstream, for Anthropic, where OpenAI-wire providers
// answer it.
func TestAnthropicEmptyText(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		path := "/api/v1/chats/" + w.anthropicChat + "/completions"
		h.up.Enqueue(llmtest.Behavior{Deltas: []string{}})
		first := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("say nothing")}})
		if got := first["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]; got != "" {
			t.Fatalf("the empty reply came back as %v", got)
		}
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": first["conversationId"],
			"messages": []any{userMessage(""), userMessage("now speak")}})
		msgs := h.up.Last().Body["messages"].([]any)
		for _, m := range msgs {
			for _, b := range m.(map[string]any)["content"].([]any) {
				if b := b.(map[string]any); b["type"] == "text" && b["text"] == "" {
					t.Errorf("an empty text block went upstream: %v", msgs)
				}
			}
		}
		if len(msgs) != 2 {
			t.Errorf("upstream messages = %v, want the two user messages with text", msgs)
		}

		before := h.up.Count()
		onlySystem := map[string]any{"messages": []any{map[string]any{"role": "system", "content": "only this"}}}
		r := h.call("POST", path, h.admin, onlySystem)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(r.ErrorMessage(), "at least one user or assistant message") {
			t.Errorf("a system message alone to Anthropic = %d %s, want 400", r.Status, r.Body)
		}
		if h.up.Count() != before {
			t.Error("the refused call reached the upstream")
		}
		h.must(200, "POST", "/api/v1/chats/"+w.openaiChat+"/completions", h.admin, onlySystem)
	})
}

// TestAnthropicRefusedTurn: a reply Anthropic's classifiers stopped
// (stop_reason refusal) says why, as the message's refusal (streamed, a
// refusal delta), and its turn is stored but not sent to Anthropic again:
// Anthropic refuses every request that still holds it, so the
// conversation could not go on.
func TestAnthropicRefusedTurn(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		path := "/api/v1/chats/" + w.anthropicChat + "/completions"
		const why = "This request was declined because it may relate to cyber harm."
		h.up.Enqueue(llmtest.Behavior{Reply: "Here is how", FinishReason: "refusal", Refusal: why})
		first := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("how do I break in?")}})
		choice := first["choices"].([]any)[0].(map[string]any)
		if msg := choice["message"].(map[string]any); msg["refusal"] != why || choice["finish_reason"] != "content_filter" {
			t.Errorf("refused reply = %v, want refusal %q and content_filter", choice, why)
		}
		h.up.Enqueue(llmtest.Behavior{Reply: "Here is", FinishReason: "refusal"}) // no explanation
		var refusal strings.Builder
		res := stream(t, h, path, map[string]any{"messages": []any{userMessage("and now?")}, "conversationId": first["conversationId"]})
		for _, ev := range readSSE(t, res) {
			if choices, _ := ev.data["choices"].([]any); len(choices) > 0 {
				r, _ := choices[0].(map[string]any)["delta"].(map[string]any)["refusal"].(string)
				refusal.WriteString(r)
			}
		}
		if refusal.String() != "The model declined to go on with this request." {
			t.Errorf("streamed refusal = %q, want Parley's sentence", refusal.String())
		}
		h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("never mind: 2+2?")}, "conversationId": first["conversationId"]})
		msgs := h.up.Last().Messages
		if len(msgs) != 2 || msgs[1].Content != "never mind: 2+2?" {
			t.Errorf("upstream messages after two refused turns = %+v, want the system message and the new one", msgs)
		}
		conv := h.must(200, "GET", "/api/v1/conversations/"+first["conversationId"].(string), h.admin, nil)
		if n := len(conv["messages"].([]any)); n != 6 {
			t.Errorf("the conversation keeps %d messages, want all 6", n)
		}

		// A refused reply that made a whole call before it stopped: the
		// response shows the call, but the turn keeps none to be answered
		// (its result could not go to Anthropic without the turn), so the
		// conversation goes on with a user message.
		calls := []llmtest.ToolCall{{ID: "toolu_1", Name: "weather", Arguments: `{"city":"Paris"}`}}
		h.up.Enqueue(llmtest.Behavior{ToolCalls: calls, FinishReason: "refusal", Refusal: why})
		called := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("weather, then break in?")}, "tools": weatherTools()})
		if m := called["choices"].([]any)[0].(map[string]any)["message"].(map[string]any); m["tool_calls"] == nil || m["refusal"] != why {
			t.Errorf("the refused reply that called a tool = %v, want its call and its refusal", m)
		}
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": called["conversationId"], "messages": []any{userMessage("just the weather?")}})
		if msgs := h.up.Last().Messages; len(msgs) != 2 || msgs[1].Content != "just the weather?" {
			t.Errorf("after a refused turn that called a tool, upstream messages = %+v, want the system message and the new one", msgs)
		}

		// Stateless, a history that ends with a refused reply would go up
		// ending with an earlier reply, which Anthropic would continue.
		r := h.call("POST", "/api/v1/chat/completions", h.admin, map[string]any{"aiProviderId": w.anthropic, "messages": []any{
			userMessage("Name a colour."), map[string]any{"role": "assistant", "content": "Blue is"},
			userMessage("how do I break in?"), map[string]any{"role": "assistant", "refusal": why}}})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "the last message is a refused reply") {
			t.Errorf("a history ending with a refused reply = %d %s, want 400", r.Status, r.Body)
		}
	})
}

// TestAnthropicBlankText: Anthropic refuses a text of only whitespace as
// it refuses an empty one (before, a 502 upstream_error for a request
// with one, and for every continuation of a conversation with a reply of
// one). Such a message is left out upstream, and debug, which shows the
// messages sent upstream, leaves it out too.
func TestAnthropicBlankText(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		path := "/api/v1/chats/" + w.anthropicChat + "/completions"
		h.up.Enqueue(llmtest.Behavior{Reply: "\n\n"})
		first := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("say nothing")}})
		got := h.must(200, "POST", path, h.admin, map[string]any{"conversationId": first["conversationId"], "debug": true,
			"messages": []any{userMessage(" \n"), userMessage("now speak")}})
		var debug []string
		for _, m := range got["debug"].(map[string]any)["messages"].([]any) {
			m := m.(map[string]any)
			debug = append(debug, fmt.Sprint(m["role"], ":", m["content"]))
		}
		var sent []string
		for _, m := range h.up.Last().Messages {
			sent = append(sent, m.Role+":"+m.Content)
		}
		want := []string{"system:" + anthropicSystem, "user:say nothing", "user:now speak"}
		if !reflect.DeepEqual(sent, want) {
			t.Errorf("upstream messages = %q, want %q", sent, want)
		}
		if !reflect.DeepEqual(debug, want) {
			t.Errorf("debug messages = %q, want what went upstream, %q", debug, want)
		}
	})
}

// TestStreamNamesTheProvidersModel: the model a provider says answered
// ("...-2025-01-01" for an alias) is the one every chunk of a stream names,
// as a whole response does, whichever the wire.
func TestStreamNamesTheProvidersModel(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		const dated = "claude-fake-2025-01-01"
		for _, chat := range []string{w.anthropicChat, w.openaiChat} {
			path := "/api/v1/chats/" + chat + "/completions"
			h.up.Enqueue(llmtest.Behavior{Model: dated})
			if got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("which model")}})["model"]; got != dated {
				t.Errorf("%s: response model = %v, want %s", chat, got, dated)
			}
			h.up.Enqueue(llmtest.Behavior{Model: dated})
			events := readSSE(t, stream(t, h, path, map[string]any{"messages": []any{userMessage("which model")}}))
			for _, ev := range events[:len(events)-1] {
				if ev.data["model"] != dated {
					t.Errorf("%s: a chunk names model %v, want %s: %s", chat, ev.data["model"], dated, ev.raw)
				}
			}
		}
	})
}

// TestAbsurdUsageIsBounded: a provider that reports more tokens than any
// call can hold (past PostgreSQL's integer columns) gets its turn stored
// all the same, with each count bounded so that their sum fits in 32 bits,
// on both engines and both wires; before, PostgreSQL answered 500 and lost
// a paid turn.
func TestAbsurdUsageIsBounded(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		for _, chat := range []string{w.anthropicChat, w.openaiChat} {
			h.up.Enqueue(llmtest.Behavior{Usage: &llmtest.Usage{PromptTokens: 3_000_000_000, CompletionTokens: 5}})
			r := h.call("POST", "/api/v1/chats/"+chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("count")}})
			if r.Status != 200 {
				t.Fatalf("%s: %d %s, want 200", chat, r.Status, r.Body)
			}
			got := r.JSON()
			if u := got["usage"].(map[string]any); u["prompt_tokens"] != float64(math.MaxInt32/2) || u["total_tokens"] != float64(math.MaxInt32/2+5) {
				t.Errorf("%s: usage = %v, want prompt_tokens bounded at (2³¹−1)/2", chat, u)
			}
			cv := h.must(200, "GET", "/api/v1/conversations/"+got["conversationId"].(string), h.admin, nil)
			if n := len(cv["messages"].([]any)); n != 2 {
				t.Errorf("%s: the turn stored %d messages, want 2", chat, n)
			}
		}
	})
}

// chatTurn sends a per-chat completion as the admin with header, streamed
// or not, and returns its conversation and usage.
func chatTurn(t *testing.T, h *harness, header http.Header, path string, body map[string]any, streamed bool) (conversation string, usage map[string]any) {
	t.Helper()
	if streamed {
		_, events := readRaw(t, streamWith(t, h, context.Background(), h.admin, header, path, body))
		for _, ev := range events {
			if u, ok := ev.data["usage"].(map[string]any); ok {
				usage = u
			}
			if id, ok := ev.data["conversationId"].(string); ok {
				conversation = id
			}
		}
		return conversation, usage
	}
	r, err := h.sendWith("POST", path, h.admin, header, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 {
		t.Fatalf("POST %s: %d %s", path, r.Status, r.Body)
	}
	usage, _ = r.JSON()["usage"].(map[string]any)
	return conversationIn(t, r), usage
}

// TestUsageDetails: the prompt's cached tokens and the reply's reasoning
// tokens the provider reports come back in OpenAI's usage details, from
// either wire protocol, whole and streamed (Anthropic's thinking_tokens
// as reasoning tokens); a provider that reports none gives zeros, as OpenAI does.
// They are stored: the conversation's reply and an idempotent replay show
// them, and the usage report sums them.
func TestUsageDetails(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		reported := llmtest.Usage{PromptTokens: 20, CompletionTokens: 9, CachedTokens: 12, ReasoningTokens: 4}
		for _, tc := range []struct {
			name, chat        string
			usage             *llmtest.Usage
			cached, reasoning float64
		}{
			{"openai-compatible", w.openaiChat, &reported, 12, 4},
			{"anthropic", w.anthropicChat, &reported, 12, 4},
			{"none reported", w.openaiChat, &llmtest.Usage{PromptTokens: 20, CompletionTokens: 9}, 0, 0},
		} {
			for _, streamed := range []bool{false, true} {
				h.up.Enqueue(llmtest.Behavior{Usage: tc.usage})
				path := "/api/v1/chats/" + tc.chat + "/completions"
				body := map[string]any{"messages": []any{userMessage("hi")}}
				key := strings.ReplaceAll(fmt.Sprintf("%s-%v", tc.name, streamed), " ", "-")
				conversation, usage := chatTurn(t, h, keyed(key), path, body, streamed)
				cached, _ := usage["prompt_tokens_details"].(map[string]any)
				reasoning, _ := usage["completion_tokens_details"].(map[string]any)
				if usage["prompt_tokens"] != 20.0 || usage["completion_tokens"] != 9.0 || cached == nil || cached["cached_tokens"] != tc.cached ||
					reasoning == nil || reasoning["reasoning_tokens"] != tc.reasoning {
					t.Errorf("%s, streamed %v: usage %v; want 20 prompt (%v cached), 9 completion (%v reasoning)", tc.name, streamed, usage, tc.cached, tc.reasoning)
				}

				msgs := h.must(200, "GET", "/api/v1/conversations/"+conversation, h.admin, nil)["messages"].([]any)
				stored, _ := msgs[len(msgs)-1].(map[string]any)["usage"].(map[string]any)
				if stored["cachedTokens"] != tc.cached || stored["reasoningTokens"] != tc.reasoning {
					t.Errorf("%s, streamed %v: the stored reply's usage %v; want %v cached, %v reasoning", tc.name, streamed, stored, tc.cached, tc.reasoning)
				}
				if !streamed {
					r, err := h.sendWith("POST", path, h.admin, keyed(key), body)
					if err != nil {
						t.Fatal(err)
					}
					if r.Header.Get("Idempotent-Replayed") != "true" {
						t.Fatalf("%s: the replay: %d %s", tc.name, r.Status, r.Body)
					}
					if got := r.JSON()["usage"]; !reflect.DeepEqual(got, usage) {
						t.Errorf("%s: the replay's usage %v; want the first answer's %v", tc.name, got, usage)
					}
				}
			}
		}

		h.app.FlushUsage()
		want := map[string]usageGroup{
			w.openai:    {prompt: 80, completion: 36, total: 116, requests: 4, cached: 24, reasoning: 8},
			w.anthropic: {prompt: 40, completion: 18, total: 58, requests: 2, cached: 24, reasoning: 8},
		}
		if got := h.usagePage(t, w.project, "groupBy=provider").totals; !reflect.DeepEqual(got, want) {
			t.Errorf("usage by provider\n%+v\nwant\n%+v", got, want)
		}
	})
}

// TestAnthropicPromptCache: an Anthropic provider's promptCache, off until
// its owner sets it, asks Anthropic to cache each call's prompt (the
// Messages API's top-level cache_control, with the TTL set), so that the
// next turn of a conversation reads its history from the cache: the fake
// plays Anthropic's caching, and the continuation's cached tokens, of its
// prompt, come back and are stored. "off" stops it; the setting applies to
// Anthropic providers only, and takes only the TTLs Anthropic knows.
func TestAnthropicPromptCache(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		provider := "/api/v1/ai-providers/" + w.anthropic
		if got := h.must(200, "GET", provider, h.admin, nil)["promptCache"]; got != "off" {
			t.Errorf("a new anthropic provider's promptCache = %v; want off", got)
		}
		if got, ok := h.must(200, "GET", "/api/v1/ai-providers/"+w.openai, h.admin, nil)["promptCache"]; ok {
			t.Errorf("an openai-compatible provider shows promptCache %v; want none", got)
		}
		path := "/api/v1/chats/" + w.anthropicChat + "/completions"
		// turn sends prompt, continuing conversation unless it is "", and
		// returns the conversation, the usage and what went upstream.
		turn := func(conversation, prompt string, streamed bool) (string, map[string]any, map[string]any) {
			t.Helper()
			body := map[string]any{"messages": []any{userMessage(prompt)}}
			if conversation != "" {
				body["conversationId"] = conversation
			}
			conversation, usage := chatTurn(t, h, nil, path, body, streamed)
			return conversation, usage, lastUpstreamBody(t, h)
		}
		// cacheOf is the prompt's tokens read from the cache and written
		// to it.
		cacheOf := func(usage map[string]any) (read, written any) {
			details, _ := usage["prompt_tokens_details"].(map[string]any)
			return details["cached_tokens"], details["cache_write_tokens"]
		}

		conv, _, sent := turn("", "first question", false)
		if cc, ok := sent["cache_control"]; ok {
			t.Errorf("promptCache off: the upstream got cache_control %v", cc)
		}
		_, usage, _ := turn(conv, "second question", false)
		if read, written := cacheOf(usage); read != 0.0 || written != 0.0 {
			t.Errorf("promptCache off: a continuation's usage %v; want nothing read from the cache or written to it", usage)
		}
		h.app.FlushUsage()
		before := h.usagePage(t, w.project, "groupBy=provider").totals[w.anthropic]
		var read, written float64 // by the turns below

		for _, ttl := range []string{"5m", "1h"} {
			for _, streamed := range []bool{false, true} {
				if got := h.must(200, "PATCH", provider, h.admin, map[string]any{"promptCache": ttl})["promptCache"]; got != ttl {
					t.Fatalf("PATCH promptCache %s: the provider says %v", ttl, got)
				}
				first := fmt.Sprintf("first question, %s, streamed %v", ttl, streamed)
				conv, usage, sent := turn("", first, streamed)
				want := map[string]any{"type": "ephemeral", "ttl": ttl}
				if !reflect.DeepEqual(sent["cache_control"], want) {
					t.Errorf("promptCache %s: the upstream got cache_control %v; want %v", ttl, sent["cache_control"], want)
				}
				// And a breakpoint after the system prompt, which every
				// conversation of the chat shares.
				if sys, _ := sent["system"].([]any); len(sys) == 0 || !reflect.DeepEqual(sys[len(sys)-1].(map[string]any)["cache_control"], want) {
					t.Errorf("promptCache %s: the upstream got system %v; want its last block with cache_control %v", ttl, sent["system"], want)
				}
				// The first turn's prompt is written, and nothing read but
				// the system prompt an earlier conversation's first turn
				// cached (none before the first).
				prompt := usage["prompt_tokens"].(float64)
				sysRead := 0.0
				if ttl != "5m" || streamed {
					sysRead = float64(llmtest.PromptTokens(anthropicSystem))
				}
				if rd, wr := cacheOf(usage); rd != sysRead || wr != prompt-sysRead {
					t.Errorf("promptCache %s, streamed %v: a first turn's usage %v; want %v of its %v prompt tokens read from the cache (the system prompt), the rest written",
						ttl, streamed, usage, sysRead, prompt)
				}
				read, written = read+sysRead, written+prompt-sysRead
				conv, usage, _ = turn(conv, "second question", streamed)
				// The history up to the first turn's question was cached
				// by it; the reply and the new question are written now.
				history := float64(llmtest.PromptTokens(anthropicSystem, first))
				prompt = usage["prompt_tokens"].(float64)
				if rd, wr := cacheOf(usage); rd != history || wr != prompt-history || prompt <= history {
					t.Errorf("promptCache %s, streamed %v: a continuation's usage %v; want %v of its prompt tokens read from the cache, the rest written", ttl, streamed, usage, history)
				}
				read, written = read+history, written+prompt-history
				msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
				if stored := msgs[len(msgs)-1].(map[string]any)["usage"].(map[string]any); stored["cachedTokens"] != history || stored["cacheWriteTokens"] != prompt-history {
					t.Errorf("promptCache %s: the stored reply's usage %v; want %v cached, %v written", ttl, stored, history, prompt-history)
				}
			}
		}

		if got := h.must(200, "PATCH", provider, h.admin, map[string]any{"promptCache": "off"})["promptCache"]; got != "off" {
			t.Fatalf("PATCH promptCache off: the provider says %v", got)
		}
		if _, _, sent := turn("", "after off", false); sent["cache_control"] != nil {
			t.Errorf("promptCache off again: the upstream got cache_control %v", sent["cache_control"])
		}
		h.app.FlushUsage()
		after := h.usagePage(t, w.project, "groupBy=provider").totals[w.anthropic]
		if after.cached-before.cached != read || after.cacheWrite-before.cacheWrite != written {
			t.Errorf("the usage report's anthropic provider: %v cached and %v written by the cached turns; want %v and %v",
				after.cached-before.cached, after.cacheWrite-before.cacheWrite, read, written)
		}

		listed := func() int {
			return len(h.must(200, "GET", "/api/v1/ai-providers?projectId="+w.project, h.admin, nil)["data"].([]any))
		}
		n := listed()
		for _, tc := range []struct {
			method, path string
			body         map[string]any
			want         string
		}{
			{"PATCH", "/api/v1/ai-providers/" + w.openai, map[string]any{"promptCache": "5m"}, "applies only to type anthropic"},
			{"PATCH", provider, map[string]any{"promptCache": "10m"}, "5m"},
			{"POST", "/api/v1/ai-providers", map[string]any{"projectId": w.project, "name": "gpt cached", "type": "openai",
				"defaultModel": "gpt-fake", "apiKey": upstreamKey, "promptCache": "1h"}, "applies only to type anthropic"},
		} {
			r := h.call(tc.method, tc.path, h.admin, tc.body)
			if r.Status != 400 || r.ErrorField() != "promptCache" || !strings.Contains(r.ErrorMessage(), tc.want) {
				t.Errorf("%s %s %v: %d %s; want a 400 on promptCache saying %q", tc.method, tc.path, tc.body, r.Status, r.Body, tc.want)
			}
		}
		if got := h.must(200, "GET", provider, h.admin, nil)["promptCache"]; got != "off" {
			t.Errorf("after the refused updates promptCache = %v; want off, unchanged", got)
		}
		if _, ok := h.must(200, "GET", "/api/v1/ai-providers/"+w.openai, h.admin, nil)["promptCache"]; ok || listed() != n {
			t.Error("a refused create or update changed the providers")
		}
	})
}

// TestReasoningEffort: reasoningEffort goes to an OpenAI-wire provider as
// reasoning_effort and to Anthropic as output_config.effort (beside a
// strict JSON schema's format there), stateless and per chat, streamed or not,
// and not at all when it is left out; a value neither knows, or OpenAI's
// none and minimal sent to Anthropic, which knows neither, is a 400 on
// the field that calls nothing.
func TestReasoningEffort(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		// effortSent is the effort the last upstream request carried, and
		// whether it carried one.
		effortSent := func(anthropic bool) (any, bool) {
			body := lastUpstreamBody(t, h)
			if !anthropic {
				v, ok := body["reasoning_effort"]
				return v, ok
			}
			cfg, _ := body["output_config"].(map[string]any)
			v, ok := cfg["effort"]
			return v, ok
		}
		for _, tc := range []struct {
			name, path string
			anthropic  bool
			extra      map[string]any
		}{
			{"openai-compatible, stateless", "/api/v1/chats/completions", false, map[string]any{"aiProviderId": w.openai}},
			{"anthropic, stateless", "/api/v1/chats/completions", true, map[string]any{"aiProviderId": w.anthropic}},
			{"openai-compatible, per chat", "/api/v1/chats/" + w.openaiChat + "/completions", false, nil},
			{"anthropic, per chat", "/api/v1/chats/" + w.anthropicChat + "/completions", true, nil},
		} {
			for _, streamed := range []bool{false, true} {
				body := map[string]any{"messages": []any{userMessage("think hard")}, "reasoningEffort": "high", "stream": streamed}
				maps.Copy(body, tc.extra)
				if r := h.call("POST", tc.path, h.admin, body); r.Status != 200 {
					t.Fatalf("%s, streamed %v: %d %s", tc.name, streamed, r.Status, r.Body)
				}
				if got, ok := effortSent(tc.anthropic); !ok || got != "high" {
					t.Errorf("%s, streamed %v: the upstream got effort %v (sent: %v); want high", tc.name, streamed, got, ok)
				}
			}
			body := map[string]any{"messages": []any{userMessage("no effort")}}
			maps.Copy(body, tc.extra)
			h.must(200, "POST", tc.path, h.admin, body)
			if got, ok := effortSent(tc.anthropic); ok {
				t.Errorf("%s without reasoningEffort: the upstream got %v", tc.name, got)
			}
		}

		schema := map[string]any{"type": "json_schema", "jsonSchema": map[string]any{"name": "answer", "strict": true,
			"schema": map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}},
				"required": []any{"a"}, "additionalProperties": false}}}
		h.up.Enqueue(llmtest.Behavior{Reply: `{"a":"b"}`})
		h.must(200, "POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, map[string]any{
			"messages": []any{userMessage("as JSON")}, "reasoningEffort": "max", "responseFormat": schema})
		cfg, _ := lastUpstreamBody(t, h)["output_config"].(map[string]any)
		if format, _ := cfg["format"].(map[string]any); cfg["effort"] != "max" || format["type"] != "json_schema" {
			t.Errorf("anthropic with a JSON schema: output_config %v; want the effort max beside the schema's format", cfg)
		}

		n := h.up.Count()
		for _, tc := range []struct{ chat, effort, want string }{
			{w.openaiChat, "extreme", "xhigh"},
			{w.openaiChat, "HIGH", "xhigh"},
			{w.anthropicChat, "minimal", "an Anthropic provider takes low"},
			{w.anthropicChat, "none", "an Anthropic provider takes low"},
		} {
			r := h.call("POST", "/api/v1/chats/"+tc.chat+"/completions", h.admin, map[string]any{
				"messages": []any{userMessage("hi")}, "reasoningEffort": tc.effort})
			if r.Status != 400 || r.ErrorField() != "reasoningEffort" || !strings.Contains(r.ErrorMessage(), tc.want) {
				t.Errorf("reasoningEffort %s: %d %s; want a 400 on reasoningEffort saying %q", tc.effort, r.Status, r.Body, tc.want)
			}
		}
		if h.up.Count() != n {
			t.Error("a refused reasoningEffort called the upstream")
		}
	})
}

// TestAnthropicDataSources: documents named as context reach an Anthropic
// provider in its system parameter, after the chat's system message,
// streamed as whole.
func TestAnthropicDataSources(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "faq", "content": "Refunds take 5 days."})
		for _, streamed := range []bool{false, true} {
			r := h.call("POST", "/api/v1/chats/"+w.anthropicChat+"/completions", h.admin, map[string]any{
				"messages": []any{userMessage("How long?")}, "names": []any{"faq"}, "stream": streamed})
			if r.Status != 200 {
				t.Fatalf("streamed %v: %d %s", streamed, r.Status, r.Body)
			}
			sys := h.up.Last().Messages[0]
			if sys.Role != "system" || !strings.HasPrefix(sys.Content, anthropicSystem+"\n\n") ||
				!strings.Contains(sys.Content, "name=\"faq\">\nRefunds take 5 days.\n</document>") {
				t.Errorf("streamed %v: the system parameter %q; want the chat's system message, then the document", streamed, sys.Content)
			}
		}
	})
}

// TestUpstreamInvalidUTF8: an upstream of a project's own may send bytes
// that are not UTF-8, in its model's name and in its text. They come out,
// and are stored, as U+FFFD: before, the model's name made Prometheus's
// client panic after the turn was stored, on every later call too, its
// usage never recorded, and PostgreSQL refused the turn (a 500, the reply
// paid for and lost). A character a stream splits between two pieces is
// joined again, as it is stored.
func TestUpstreamInvalidUTF8(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		path := "/api/v1/chats/" + w.anthropicChat + "/completions"
		h.up.Enqueue(llmtest.Behavior{Header: http.Header{"Content-Type": {"application/json"}},
			Body: "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-\xff\"," +
				"\"content\":[{\"type\":\"text\",\"text\":\"hi \xff there\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}"})
		var conv string
		for i := range 2 { // the second: a model seen before
			r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("hello")}})
			if r.Status != 200 || !utf8.Valid(r.Body) {
				t.Fatalf("= %d %q; want 200 and UTF-8", r.Status, r.Body)
			}
			if i == 0 {
				conv = conversationIn(t, r)
			}
		}
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", h.admin, nil)["data"].([]any)
		if got := msgs[1].(map[string]any); got["content"] != "hi \uFFFD there" || got["model"] != "claude-\uFFFD" {
			t.Errorf("stored reply %v; want the invalid bytes as U+FFFD", got)
		}

		// A stream that splits "€" between two text pieces.
		h.up.Enqueue(llmtest.Behavior{Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: anthropicEvents(
			`{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-fake","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}`,
			`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
			"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"5 \xe2\x82\"}}",
			"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xac each\"}}",
			`{"type":"content_block_stop","index":0}`,
			`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}`,
			`{"type":"message_stop"}`)})
		res := streamAs(t, h, context.Background(), h.admin, path, map[string]any{"messages": []any{userMessage("price?")}})
		var text strings.Builder
		for _, e := range readSSE(t, res) {
			if c, ok := e.data["choices"].([]any); ok && len(c) > 0 {
				d, _ := c[0].(map[string]any)["delta"].(map[string]any)
				s, _ := d["content"].(string)
				text.WriteString(s)
			}
		}
		if text.String() != "5 € each" {
			t.Errorf("streamed %q; want the character joined again, %q", text.String(), "5 € each")
		}

		h.app.FlushUsage()
		rep := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?from=2000-01-01", h.admin, nil)["data"].([]any)[0].(map[string]any)
		if rep["requests"] != 3.0 {
			t.Errorf("the usage report counts %v requests; want the 3 completions", rep["requests"])
		}
	})
}

// anthropicEvents is a Messages API stream of the events' data.
func anthropicEvents(data ...string) string {
	var b strings.Builder
	for _, d := range data {
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(d), &ev)
		fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", ev.Type, d)
	}
	return b.String()
}
