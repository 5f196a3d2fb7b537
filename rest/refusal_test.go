package rest_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
)

// refusalText is what the fake's model says when it declines.
const refusalText = "I'm sorry, I can't help with that."

// streamedRefusal joins the refusal pieces of a stream's chunks.
func streamedRefusal(events []sseEvent) string {
	var b strings.Builder
	for _, ev := range events {
		choices, _ := ev.data["choices"].([]any)
		for _, c := range choices {
			delta, _ := c.(map[string]any)["delta"].(map[string]any)
			if s, ok := delta["refusal"].(string); ok {
				b.WriteString(s)
			}
		}
	}
	return b.String()
}

// TestRefusalIsKept: a reply in which the model declined (OpenAI's
// refusal) is stored with its refusal, JSON or streamed; the conversation
// shows it, an idempotency key replays it, and a continuation sends it
// back to OpenAI as the reply's refusal, beside an empty content.
func TestRefusalIsKept(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		prov := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": p, "name": "openai", "type": "openai", "baseUrl": h.up.URL(), "defaultModel": "gpt-test", "apiKey": upstreamKey,
		})["id"].(string)
		chat := h.chat(h.admin, p, prov, nil)
		path := "/api/v1/chats/" + chat + "/completions"
		ask := map[string]any{"messages": []any{userMessage("Tell me a secret.")}}

		h.up.Enqueue(llmtest.Behavior{Refusal: refusalText})
		first, err := h.sendWith("POST", path, h.admin, keyed("refuse-1"), ask)
		if err != nil {
			t.Fatal(err)
		}
		body := first.JSON()
		msg := body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		if first.Status != 200 || msg["refusal"] != refusalText || msg["content"] != nil {
			t.Fatalf("completion = %d %s; want the refusal, content null", first.Status, first.Body)
		}
		conv := body["conversationId"].(string)
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(msgs) != 2 {
			t.Fatalf("conversation has %d messages; want 2", len(msgs))
		}
		if reply := msgs[1].(map[string]any); reply["refusal"] != refusalText || reply["content"] != "" || reply["role"] != "assistant" {
			t.Errorf("stored reply = %v; want the refusal, empty content", reply)
		}
		if _, ok := msgs[0].(map[string]any)["refusal"]; ok {
			t.Errorf("the user message shows a refusal: %v", msgs[0])
		}

		// Replayed by its key, as JSON and as a stream.
		calls := h.up.Count()
		again, err := h.sendWith("POST", path, h.admin, keyed("refuse-1"), ask)
		if err != nil {
			t.Fatal(err)
		}
		if got := again.JSON(); again.Header.Get("Idempotent-Replayed") != "true" || !reflect.DeepEqual(got, body) {
			t.Errorf("replay = %d %s; want the first answer %s", again.Status, again.Body, first.Body)
		}
		res := streamWith(t, h, context.Background(), h.admin, keyed("refuse-1"), path, map[string]any{"messages": ask["messages"]})
		if got := streamedRefusal(readSSE(t, res)); res.Header.Get("Idempotent-Replayed") != "true" || got != refusalText {
			t.Errorf("streamed replay: refusal %q (replayed %q); want %q", got, res.Header.Get("Idempotent-Replayed"), refusalText)
		}
		if n := h.up.Count(); n != calls {
			t.Errorf("the replays made %d calls upstream", n-calls)
		}

		// The continuation sends the refusal back as OpenAI's refusal, as
		// debug shows.
		cont := h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("Why not?")}, "debug": true})
		sent := h.up.Last().Messages
		if len(sent) != 3 || sent[1].Role != "assistant" || sent[1].Refusal != refusalText || sent[1].Content != "" {
			t.Fatalf("continuation sent %+v; want the user message, the refusal, the new message", sent)
		}
		dbg := cont["debug"].(map[string]any)["messages"].([]any)
		if m := dbg[1].(map[string]any); len(dbg) != 3 || m["refusal"] != refusalText || m["content"] != "" {
			t.Errorf("debug shows %v; want the refusal as sent", dbg)
		}
		if !strings.Contains(string(h.up.Last().RawBody), `"content":""`) {
			t.Errorf("the refused reply went without content; OpenAI requires one: %s", h.up.Last().RawBody)
		}

		// Streamed, the refusal is stored as it came.
		h.up.Enqueue(llmtest.Behavior{Refusal: refusalText})
		events := readSSE(t, stream(t, h, path, map[string]any{"messages": []any{userMessage("Another secret?")}}))
		if got := streamedRefusal(events); got != refusalText {
			t.Fatalf("streamed refusal = %q; want %q", got, refusalText)
		}
		conv2, _ := events[0].data["conversationId"].(string)
		msgs = h.must(200, "GET", "/api/v1/conversations/"+conv2, h.admin, nil)["messages"].([]any)
		if len(msgs) != 2 || msgs[1].(map[string]any)["refusal"] != refusalText {
			t.Errorf("streamed turn stored as %v; want the refusal kept", msgs)
		}

		// A stream the client stops once the refusal reached it keeps it,
		// as a stopped reply keeps its text.
		h.up.Enqueue(llmtest.Behavior{Refusal: refusalText, Fault: llmtest.FaultHang})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		before := h.up.Count()
		res = streamCtx(t, h, ctx, path, map[string]any{"messages": []any{userMessage("A third secret?")}})
		var got strings.Builder
		conv3 := readSSEUntil(t, res, func(ev sseEvent) bool {
			got.WriteString(streamedRefusal([]sseEvent{ev}))
			return got.String() == refusalText
		})
		cancel()
		res.Body.Close()
		if !h.up.WaitCanceledN(before, time.Second) {
			t.Fatal("the upstream did not see the cancellation within a second")
		}
		msgs = storedAfterStop(t, h, conv3)
		if len(msgs) != 2 || msgs[1].(map[string]any)["refusal"] != refusalText || msgs[1].(map[string]any)["finishReason"] != "client_disconnect" {
			t.Errorf("stopped turn stored as %v; want the refusal, finishReason client_disconnect", msgs)
		}
	})
}

// TestRefusalSentBack: a client may send a reply's refusal back in an
// assistant message. OpenAI gets it as the refusal; an OpenAI-compatible
// server, which has no such member, gets it as the message's text, which
// debug shows; Anthropic, which refuses every request that still holds a
// turn it refused, gets no refused turn: neither the reply nor the user's
// message it answered. A refusal is for assistant messages only, and not
// beside a documentId.
func TestRefusalSentBack(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		claude := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
			"projectId": w.project, "name": "claude", "type": "anthropic", "baseUrl": h.up.URL(), "defaultModel": "claude-test", "apiKey": upstreamKey,
		})["id"].(string)
		// A refusal alone becomes the text; one beside content follows it
		// on a line of its own.
		for _, c := range []struct {
			assistant map[string]any
			text      string
		}{
			{map[string]any{"role": "assistant", "refusal": refusalText}, refusalText},
			{map[string]any{"role": "assistant", "content": "Well,", "refusal": refusalText}, "Well,\n" + refusalText},
		} {
			history := []any{userMessage("Tell me a secret."), c.assistant, userMessage("Then a joke.")}
			r := h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": history, "debug": true})
			sent := h.up.Last().Messages
			if len(sent) != 3 || sent[1].Role != "assistant" || sent[1].Content != c.text || sent[1].Refusal != "" {
				t.Errorf("the OpenAI-compatible provider was sent %+v; want %q as the assistant's text", sent, c.text)
			}
			dbg := r["debug"].(map[string]any)["messages"].([]any)
			if m := dbg[1].(map[string]any); m["content"] != c.text || m["refusal"] != nil {
				t.Errorf("debug shows %v; want the text sent", m)
			}
			r = h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": claude, "messages": history, "debug": true})
			if sent := h.up.Last().Messages; len(sent) != 1 || sent[0].Content != "Then a joke." {
				t.Errorf("Anthropic was sent %+v; want the last message alone", sent)
			}
			if dbg := r["debug"].(map[string]any)["messages"].([]any); len(dbg) != 1 {
				t.Errorf("debug shows %v; want what was sent", dbg)
			}
		}

		h.refusedByBoth(t, w, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi", "refusal": "no"}}},
			"messages[0].refusal")
		h.refusedByBoth(t, w, map[string]any{"messages": []any{
			map[string]any{"role": "assistant", "documentId": "doc_0123456789abcdef", "refusal": "no"}, userMessage("hi")}},
			"messages[0].documentId")
	})
}
