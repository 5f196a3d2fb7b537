package rest_test

import (
	"path/filepath"
	"testing"
)

// TestAILibraries runs e2e/ai-libs (the Vercel AI SDK and LangChain, as
// the README configures them) against a Parley on SQLite with the fake
// upstream: stateless and per chat, streamed and not, and the README's
// recipes that read a per-chat completion's conversationId and continue
// it. It needs `npm ci` in e2e/ai-libs (which brings Node 22, as both
// libraries require); enable it with PARLEY_AILIBS_E2E=1 (scripts/e2e.sh
// does).
func TestAILibraries(t *testing.T) {
	h, w, key := newE2E(t, "PARLEY_AILIBS_E2E", "the AI SDK and LangChain end-to-end test (needs node and npm ci in e2e/ai-libs)")
	npmTest(t, filepath.Join("..", "e2e", "ai-libs"), "ai",
		"PARLEY_BASE_URL="+h.srv.URL+"/api/v1",
		"PARLEY_API_KEY="+key,
		"PARLEY_AI_PROVIDER_ID="+w.provider,
		"PARLEY_CHAT_ID="+w.chat,
	)
	// Each library's calls reached the upstream: 2 + 3 from the AI SDK,
	// 2 + 2 from LangChain (the 404 none).
	if n := len(h.up.Requests()); n != 9 {
		t.Errorf("the upstream got %d requests, want 9; did the node tests run?", n)
	}
}
