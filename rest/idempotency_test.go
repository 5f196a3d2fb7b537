package rest_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// keyed is a request header carrying an Idempotency-Key.
func keyed(key string) http.Header { return http.Header{"Idempotency-Key": {key}} }

// TestIdempotencyKey: a per-chat completion sent again with its
// Idempotency-Key and the same body is answered with the stored turn,
// JSON or streamed, marked Idempotent-Replayed, without a call upstream
// or a second turn; the key is scoped to the chat; the same key with
// another body, and a malformed key, are 400s that change nothing.
func TestIdempotencyKey(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		post := func(key string, body map[string]any) *response {
			t.Helper()
			r, err := h.sendWith("POST", path, h.admin, keyed(key), body)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		hello := map[string]any{"messages": []any{userMessage("Hello!")}, "temperature": 0.5}

		first := post("key-1", hello)
		if first.Status != 200 || first.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first call = %d, Idempotent-Replayed %q: %s", first.Status, first.Header.Get("Idempotent-Replayed"), first.Body)
		}
		calls := h.up.Count()
		want := first.JSON()
		conv := want["conversationId"].(string)

		again := post("key-1", map[string]any{"temperature": 0.5, "messages": []any{userMessage("Hello!")}})
		if again.Status != 200 || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("the call again = %d, Idempotent-Replayed %q: %s", again.Status, again.Header.Get("Idempotent-Replayed"), again.Body)
		}
		if got := again.JSON(); !reflect.DeepEqual(got, want) {
			t.Errorf("replayed response\n%v\nwant the first's\n%v", got, want)
		}

		// Streamed, the stored turn comes as a stream, with the same ids,
		// text, finish reason and usage.
		res := streamWith(t, h, context.Background(), h.admin, keyed("key-1"), path, map[string]any{"messages": []any{userMessage("Hello!")}, "temperature": 0.5})
		if res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("streamed again = %d, Idempotent-Replayed %q", res.StatusCode, res.Header.Get("Idempotent-Replayed"))
		}
		text, finish, usage := streamedReply(t, readSSE(t, res), want["id"].(string), conv)
		choice := want["choices"].([]any)[0].(map[string]any)
		if text != choice["message"].(map[string]any)["content"] || finish != choice["finish_reason"] || !reflect.DeepEqual(usage, want["usage"]) {
			t.Errorf("streamed replay: text %q, finish %q, usage %v; want the first call's %v", text, finish, usage, want)
		}
		if n := h.up.Count(); n != calls {
			t.Errorf("the upstream got %d calls for the replays; want none", n-calls)
		}

		// The same key with another body changes nothing.
		other := post("key-1", map[string]any{"messages": []any{userMessage("Hello?")}, "temperature": 0.5})
		if other.Status != 400 || other.ErrorCode() != "invalid_request" || other.ErrorField() != "idempotencyKey" ||
			!strings.Contains(other.ErrorMessage(), "used for another request") || !strings.Contains(other.ErrorMessage(), conv) {
			t.Errorf("same key, other body = %d: %s", other.Status, other.Body)
		}
		for _, bad := range []string{strings.Repeat("k", 256), "two words", "naïve"} {
			r := post(bad, hello)
			if r.Status != 400 || r.ErrorField() != "idempotencyKey" {
				t.Errorf("key %.20q = %d: %s", bad, r.Status, r.Body)
			}
		}
		// An empty header, or two, is refused rather than run without a key.
		for name, header := range map[string]http.Header{
			"empty": {"Idempotency-Key": {""}},
			"twice": {"Idempotency-Key": {"key-1", "key-3"}},
		} {
			r, err := h.sendWith("POST", path, h.admin, header, hello)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != 400 || r.ErrorField() != "idempotencyKey" || !strings.Contains(r.ErrorMessage(), "Idempotency-Key") {
				t.Errorf("key sent %s = %d: %s", name, r.Status, r.Body)
			}
		}
		if n := h.up.Count(); n != calls {
			t.Errorf("refused requests made %d calls upstream", n-calls)
		}
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(msgs) != 2 {
			t.Errorf("the conversation has %d messages; want the first call's 2", len(msgs))
		}
		if n := len(h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)); n != 1 {
			t.Errorf("the chat has %d conversations; want 1", n)
		}

		// A continuation with a key: sent twice, stored once.
		next := map[string]any{"conversationId": conv, "messages": []any{userMessage("And then?")}}
		cont := post("key-2", next)
		if cont.Status != 200 {
			t.Fatalf("continuation = %d: %s", cont.Status, cont.Body)
		}
		replayed := post("key-2", next)
		if replayed.Header.Get("Idempotent-Replayed") != "true" || !reflect.DeepEqual(replayed.JSON(), cont.JSON()) {
			t.Errorf("continuation again = %d %s; want the first's %s", replayed.Status, replayed.Body, cont.Body)
		}
		msgs = h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(msgs) != 4 {
			t.Errorf("the conversation has %d messages; want 4", len(msgs))
		}

		// Keys belong to their chat: the same key on another chat runs.
		chat2 := h.chat(h.admin, w.project, w.provider, nil)
		r, err := h.sendWith("POST", "/api/v1/chats/"+chat2+"/completions", h.admin, keyed("key-1"), hello)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "" || r.JSON()["conversationId"] == conv {
			t.Errorf("key-1 on another chat = %d, Idempotent-Replayed %q: %s", r.Status, r.Header.Get("Idempotent-Replayed"), r.Body)
		}
	})
}

// streamedReply reads a completion's stream: it checks the first chunk's
// ids and returns the text, the finish reason and the usage.
func streamedReply(t *testing.T, events []sseEvent, messageID, conversationID string) (text, finish string, usage map[string]any) {
	t.Helper()
	if len(events) < 3 || events[len(events)-1].raw != "[DONE]" {
		t.Fatalf("stream = %v; want chunks, then [DONE]", events)
	}
	if first := events[0].data; first["messageId"] != messageID || first["id"] != messageID || first["conversationId"] != conversationID {
		t.Errorf("first chunk %v; want messageId %s, conversationId %s", first, messageID, conversationID)
	}
	var b strings.Builder
	for _, ev := range events[:len(events)-1] {
		for _, c := range ev.data["choices"].([]any) {
			c := c.(map[string]any)
			if s, ok := c["delta"].(map[string]any)["content"].(string); ok {
				b.WriteString(s)
			}
			if f, ok := c["finish_reason"].(string); ok {
				finish = f
			}
		}
		if u, ok := ev.data["usage"].(map[string]any); ok {
			usage = u
		}
	}
	return b.String(), finish, usage
}

// TestIdempotencyKeyToolCalls: a reply that called tools is replayed with
// its calls, whole in JSON, and in a stream its text in one delta, then
// each call in one of its own, as a live stream sends them (the OpenAI
// SDKs' accumulators see a call finished only when the next begins, one a
// chunk), their extra_content (a thought signature, Anthropic's thinking)
// included.
func TestIdempotencyKeyToolCalls(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		const extra = `{"google":{"thought_signature":"sig-1"}}`
		h.up.Enqueue(llmtest.Behavior{Deltas: []string{"Let me look."}, ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "lookup", Arguments: `{"q":"refunds"}`, Extra: extra},
			{ID: "call_2", Name: "lookup", Arguments: `{"q":"returns"}`}}})
		body := map[string]any{
			"messages": []any{userMessage("How long do refunds take?")},
			"tools":    []any{map[string]any{"type": "function", "function": map[string]any{"name": "lookup", "parameters": map[string]any{"type": "object"}}}},
		}
		first, err := h.sendWith("POST", path, h.admin, keyed("tools-1"), body)
		if err != nil || first.Status != 200 {
			t.Fatalf("first call = %v %v", first, err)
		}
		want := first.JSON()
		choice := want["choices"].([]any)[0].(map[string]any)
		calls := choice["message"].(map[string]any)["tool_calls"].([]any)
		if len(calls) != 2 || choice["finish_reason"] != "tool_calls" || calls[0].(map[string]any)["extra_content"] == nil {
			t.Fatalf("first call's choice = %v; want two tool calls, the first with its extra_content", choice)
		}
		again, err := h.sendWith("POST", path, h.admin, keyed("tools-1"), body)
		if err != nil || again.Status != 200 || !reflect.DeepEqual(again.JSON(), want) {
			t.Fatalf("again = %v %v; want %v", again, err, want)
		}
		res := streamWith(t, h, context.Background(), h.admin, keyed("tools-1"), path, body)
		if res.StatusCode != 200 {
			t.Fatalf("streamed again = %d", res.StatusCode)
		}
		events := readSSE(t, res)
		text, finish, _ := streamedReply(t, events, want["id"].(string), want["conversationId"].(string))
		var streamed []any
		for _, ev := range events[:len(events)-1] {
			for _, c := range ev.data["choices"].([]any) {
				delta := c.(map[string]any)["delta"].(map[string]any)
				if tc, ok := delta["tool_calls"].([]any); ok {
					if len(tc) != 1 || delta["content"] != nil {
						t.Errorf("a replayed chunk %v; want one call a chunk, without text", delta)
					}
					streamed = append(streamed, tc...)
				}
			}
		}
		if text != "Let me look." || len(streamed) != 2 || finish != "tool_calls" {
			t.Fatalf("streamed %q, tool calls %v, finish %q; want the text, then %v", text, streamed, finish, calls)
		}
		for i, s := range streamed {
			got, call := s.(map[string]any), calls[i].(map[string]any)
			fn, want := got["function"].(map[string]any), call["function"].(map[string]any)
			if got["id"] != call["id"] || got["index"] != float64(i) || fn["name"] != want["name"] || fn["arguments"] != want["arguments"] ||
				!reflect.DeepEqual(got["extra_content"], call["extra_content"]) {
				t.Errorf("streamed tool call %d %v; want %v whole", i, got, call)
			}
		}
	})
}

// TestIdempotencyKeyOfAStreamStoppedBeforeText: a keyed stream the client
// stops while the model has only begun a tool call keeps its turn with an
// empty reply (the cut-off call dropped), and the key with it: the
// request sent again gets that reply, finish reason client_disconnect,
// rather than running, and storing its message, a second time.
func TestIdempotencyKeyOfAStreamStoppedBeforeText(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		h.up.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "lookup", Arguments: `{"query":"how long do refunds take"}`}},
			ArgPiece: 4, ChunkDelay: 100 * time.Millisecond})
		body := func() map[string]any {
			return map[string]any{
				"messages": []any{userMessage("How long do refunds take?")},
				"tools":    []any{map[string]any{"type": "function", "function": map[string]any{"name": "lookup", "parameters": map[string]any{"type": "object"}}}},
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		before := h.up.Count()
		res := streamWith(t, h, ctx, h.admin, keyed("stop-1"), path, body())
		conv := readSSEUntil(t, res, func(ev sseEvent) bool {
			for _, c := range ev.data["choices"].([]any) {
				if _, ok := c.(map[string]any)["delta"].(map[string]any)["tool_calls"]; ok {
					return true
				}
			}
			return false
		})
		cancel()
		res.Body.Close()
		if !h.up.WaitCanceledN(before, time.Second) {
			t.Fatal("the upstream did not see the cancellation within a second")
		}
		msgs := storedAfterStop(t, h, conv)
		reply, _ := msgs[len(msgs)-1].(map[string]any)
		if len(msgs) != 2 || reply["role"] != "assistant" || reply["content"] != "" || reply["toolCalls"] != nil || reply["finishReason"] != "client_disconnect" {
			t.Fatalf("stored turn %v; want the user message and an empty reply, finishReason client_disconnect", msgs)
		}

		calls := h.up.Count()
		again, err := h.sendWith("POST", path, h.admin, keyed("stop-1"), body())
		if err != nil {
			t.Fatal(err)
		}
		choice := again.JSON()["choices"].([]any)[0].(map[string]any)
		msg := choice["message"].(map[string]any)
		if again.Status != 200 || again.Header.Get("Idempotent-Replayed") != "true" || again.JSON()["conversationId"] != conv ||
			msg["content"] != "" || msg["tool_calls"] != nil || choice["finish_reason"] != "client_disconnect" {
			t.Errorf("sent again = %d (replayed %q) %s; want the stopped turn's empty reply", again.Status, again.Header.Get("Idempotent-Replayed"), again.Body)
		}
		if n := h.up.Count(); n != calls {
			t.Errorf("sent again, the request went upstream %d times; want none", n-calls)
		}
		if msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any); len(msgs) != 2 {
			t.Errorf("the conversation has %d messages; want the stopped turn's 2", len(msgs))
		}
	})
}

// TestIdempotencyKeyWhileRunning: a request whose key is still running is
// a 409 that goes nowhere; once the first has answered, the same request
// gets its turn.
func TestIdempotencyKeyWhileRunning(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := map[string]any{"messages": []any{userMessage("Take your time.")}}
		h.up.Enqueue(llmtest.Behavior{Delay: 2 * time.Second})
		done := make(chan *response, 1)
		go func() {
			r, err := h.sendWith("POST", path, h.admin, keyed("slow"), body)
			if err != nil {
				t.Error(err)
			}
			done <- r
		}()
		for deadline := time.Now().Add(10 * time.Second); h.up.Count() == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first request never reached the upstream")
			}
		}
		busy, err := h.sendWith("POST", path, h.admin, keyed("slow"), body)
		if err != nil {
			t.Fatal(err)
		}
		if busy.Status != 409 || busy.ErrorCode() != "conflict" || !strings.Contains(busy.ErrorMessage(), "still running") || busy.Header.Get("Retry-After") != "2" {
			t.Errorf("while the first runs = %d: %s", busy.Status, busy.Body)
		}
		first := <-done
		if first == nil || first.Status != 200 {
			t.Fatalf("first = %v", first)
		}
		again, err := h.sendWith("POST", path, h.admin, keyed("slow"), body)
		if err != nil {
			t.Fatal(err)
		}
		if again.Header.Get("Idempotent-Replayed") != "true" || !reflect.DeepEqual(again.JSON(), first.JSON()) {
			t.Errorf("after the first = %d %s; want its reply %s", again.Status, again.Body, first.Body)
		}
		if n := h.up.Count(); n != 1 {
			t.Errorf("the upstream got %d calls; want 1", n)
		}
	})
}

// TestIdempotencyKeyAcrossInstances: one request sent with one key to two
// instances at once runs on both (an instance knows only its own running
// keys), but only the first turn is stored: the other instance answers 409
// and stores nothing, and the request sent to it again gets the stored turn.
func TestIdempotencyKeyAcrossInstances(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		key := secret.GenerateKey()
		sameKey := func(c *app.Config) { c.SecretKey = key }
		a, b := newHarness(t, st, sameKey), newHarness(t, st, sameKey)
		w := a.world() // its provider is a's fake upstream, for both
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := map[string]any{"messages": []any{userMessage("once")}}
		a.up.Enqueue(llmtest.Behavior{Delay: 500 * time.Millisecond}, llmtest.Behavior{Delay: 500 * time.Millisecond})
		hs := []*harness{a, b}
		res := sendTogether(t, 2, func(i int) (*response, error) {
			return hs[i].sendWith("POST", path, hs[i].admin, keyed("twice"), body)
		})
		if n := a.up.Count(); n != 2 {
			t.Fatalf("the upstream got %d calls; want both instances' 2", n)
		}
		won, lost := 0, 1
		if res[0].Status != 200 {
			won, lost = 1, 0
		}
		if res[won].Status != 200 || res[lost].Status != 409 || res[lost].ErrorCode() != "conflict" ||
			!strings.Contains(res[lost].ErrorMessage(), "another request with this idempotency key stored its turn") {
			t.Fatalf("responses %d %s and %d %s; want one reply and one conflict", res[0].Status, res[0].Body, res[1].Status, res[1].Body)
		}
		again, err := hs[lost].sendWith("POST", path, hs[lost].admin, keyed("twice"), body)
		if err != nil {
			t.Fatal(err)
		}
		if again.Header.Get("Idempotent-Replayed") != "true" || !reflect.DeepEqual(again.JSON(), res[won].JSON()) {
			t.Errorf("sent again to the loser = %d %s; want the stored turn %s", again.Status, again.Body, res[won].Body)
		}
		if n := len(a.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, a.admin, nil)["data"].([]any)); n != 1 {
			t.Errorf("the chat has %d conversations; want 1", n)
		}
	})
}
