package rest_test

import (
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/rest"
)

// TestStreamFirstAndFinishChunkBytes: the opening and finishing chunks,
// written by hand for plain ids and models, are the bytes the encoder
// writes.
func TestStreamFirstAndFinishChunkBytes(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for _, model := range []string{"fake-model", `m-"1"`, "m<&>", "mé", "m\\x"} {
			for _, reason := range []string{"", "length", `we"ird`, "x\u2028y", "a<b"} {
				for _, path := range []string{"/api/v1/chats/" + w.chat + "/completions", "/api/v1/chats/completions"} {
					body := map[string]any{"messages": []any{userMessage("go")}, "model": model}
					if path == "/api/v1/chats/completions" {
						body["aiProviderId"] = w.provider
					}
					h.up.Enqueue(llmtest.Behavior{Deltas: []string{"a", "b"}, FinishReason: reason})
					events := readSSE(t, stream(t, h, path, body))
					n := len(events)
					first, last := events[0].data, events[n-3]
					str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
					id, created, m := str(first, "id"), int64(first["created"].(float64)), str(first, "model")
					if want := rest.FirstChunkJSONForTest(id, created, m, str(first, "messageId"), str(first, "conversationId")); events[0].raw != want {
						t.Errorf("%s %q %q: first chunk\n%s\nwant\n%s", path, model, reason, events[0].raw, want)
					}
					fr := last.data["choices"].([]any)[0].(map[string]any)["finish_reason"].(string)
					if want := rest.FinishChunkJSONForTest(id, created, m, fr); last.raw != want {
						t.Errorf("%s %q %q: finishing chunk\n%s\nwant\n%s", path, model, reason, last.raw, want)
					}
				}
			}
		}
	})
}
