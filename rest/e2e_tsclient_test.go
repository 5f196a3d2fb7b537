package rest_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
)

// TestTypeScriptClient runs the tests of clients/typescript, Parley's
// TypeScript client and its React hook useAIChat (seed 001's), against a
// Parley on SQLite with the fake upstream: the client's JSON and streamed
// completions, stateless and per chat, its errors and aborts, and the hook
// rendered by React in jsdom. It needs Node 20+ and `npm ci` in
// clients/typescript; enable it with PARLEY_TS_CLIENT_E2E=1
// (scripts/e2e.sh does).
func TestTypeScriptClient(t *testing.T) {
	h, w, key := newE2E(t, "PARLEY_TS_CLIENT_E2E", "the TypeScript client's tests (needs node and npm ci in clients/typescript)")
	h.up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		for i := len(r.Messages) - 1; i >= 0; i-- {
			if r.Messages[i].Role != "user" {
				continue
			}
			switch c := r.Messages[i].Content; {
			case strings.HasPrefix(c, "FAULT"):
				return llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 2}
			case strings.HasPrefix(c, "HANG"):
				return llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2}
			case strings.HasPrefix(c, "SLOW"):
				return llmtest.Behavior{ChunkDelay: 3 * e2eKeepAlive}
			case strings.HasPrefix(c, "THINK"):
				return llmtest.Behavior{Reasoning: "let me think"}
			}
			break
		}
		return llmtest.Behavior{}
	})

	// Another chat of the project, for a hook that changes chats; and a
	// chat of a project that takes one request a minute, for a 429.
	other := h.chat(h.admin, w.project, w.provider, nil)
	limited := h.world()
	h.must(200, "PUT", "/api/v1/projects/"+limited.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 1})
	// A document the hook names (names: ['handbook']).
	const handbook = "Sessions last eight hours."
	h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "handbook", "content": handbook})

	npmTest(t, filepath.Join("..", "clients", "typescript"), "react",
		"PARLEY_BASE_URL="+h.srv.URL+"/api/v1",
		"PARLEY_API_KEY="+key,
		"PARLEY_AI_PROVIDER_ID="+w.provider,
		"PARLEY_CHAT_ID="+w.chat,
		"PARLEY_OTHER_CHAT_ID="+other,
		"PARLEY_LIMITED_CHAT_ID="+limited.chat,
		"PARLEY_ADMIN_KEY="+h.admin,
	)

	// The hook's stateless messages went with the whole history, and the
	// model it named; its per-chat ones with the system prompt it set, and
	// with the document it named, each of them.
	var stateless, system bool
	knowledge := 0
	for _, r := range h.up.Requests() {
		n := len(r.Messages)
		if n == 0 {
			continue
		}
		switch last := r.Messages[n-1].Content; {
		case last == "STATELESS two":
			stateless = true
			var got []string
			for _, m := range r.Messages {
				got = append(got, m.Role+":"+m.Content)
			}
			if want := "user:STATELESS one,assistant:echo: STATELESS one,user:STATELESS two"; strings.Join(got, ",") != want || r.Model != "ts-model" {
				t.Errorf("the hook's second stateless message reached the upstream as %q with model %q, want %q with ts-model", strings.Join(got, ","), r.Model, want)
			}
		case strings.HasPrefix(last, "KNOWLEDGE"):
			if first := r.Messages[0]; first.Role == "system" && strings.Contains(first.Content, handbook) {
				knowledge++
			} else {
				t.Errorf("the hook's message %q reached the upstream without the document it named: %s %q", last, first.Role, first.Content)
			}
		case last == "How is authentication handled?":
			system = true
			if first := r.Messages[0]; first.Role != "system" || first.Content != "You are brief." {
				t.Errorf("the hook's systemPrompt reached the upstream as %s %q, want system %q", first.Role, first.Content, "You are brief.")
			}
		}
	}
	if !stateless || !system || knowledge != 2 {
		t.Errorf("the upstream never got the hook's stateless history (%v) or its per-chat message (%v), or got %d of its 2 messages naming a document",
			stateless, system, knowledge)
	}
}
