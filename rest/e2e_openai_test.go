package rest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestOpenAINodeClient runs e2e/openai-node (the official openai npm
// client) against a Parley on SQLite with the fake upstream: stateless
// and per-chat completions, streamed and not, through an OpenAI-wire and
// an Anthropic provider, tool calls, debug, and errors, each read by the SDK's
// own parsers. It needs Node 20+ and `npm ci` in e2e/openai-node;
// enable it with PARLEY_OPENAI_E2E=1 (scripts/e2e.sh does).
func TestOpenAINodeClient(t *testing.T) {
	h, w, key := newE2E(t, "PARLEY_OPENAI_E2E", "the openai npm client end-to-end test (needs node and npm ci in e2e/openai-node)")
	// An Anthropic provider on the same fake: the SDK must not tell it
	// from the OpenAI-wire one.
	anthropicProvider := h.must(201, "POST", "/api/v1/ai-providers", h.admin, map[string]any{
		"projectId": w.project, "name": "claude", "type": "anthropic", "baseUrl": h.up.URL(),
		"defaultModel": "claude-fake", "apiKey": upstreamKey,
	})["id"].(string)
	// A user message starting "FAULT stream-error" fails after two deltas;
	// one starting "SLOW" waits 4 keep-alive intervals before each event;
	// one starting "TOOLS" is answered with fakeCalls, streamed in pieces;
	// one starting "REFUSE" is refused as malformed (HTTP 400); one starting
	// "HANG" stops after two deltas until the client goes away; one
	// starting "DECLINE" is declined (OpenAI's refusal). A request that
	// ends with tool results is answered afterTools.
	const afterTools = "It is 18C in Paris at noon."
	answer := func(r llmtest.Request) llmtest.Behavior {
		if n := len(r.Messages); n > 0 && (r.Messages[n-1].Role == "tool" || len(r.Messages[n-1].ToolResults) > 0) {
			return llmtest.Behavior{Reply: afterTools}
		}
		for i := len(r.Messages) - 1; i >= 0; i-- {
			if r.Messages[i].Role == "user" {
				switch c := r.Messages[i].Content; {
				case strings.HasPrefix(c, "FAULT stream-error"):
					return llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 2}
				case strings.HasPrefix(c, "SLOW"):
					return llmtest.Behavior{ChunkDelay: 4 * e2eKeepAlive}
				case strings.HasPrefix(c, "TOOLS"):
					return llmtest.Behavior{Reply: "Checking.", ToolCalls: fakeCalls, ArgPiece: 4}
				case strings.HasPrefix(c, "REFUSE"):
					return llmtest.Behavior{Status: 400, Body: `{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}`}
				case strings.HasPrefix(c, "DECLINE"):
					return llmtest.Behavior{Refusal: "I'm sorry, I can't help with that."}
				case strings.HasPrefix(c, "HANG"):
					return llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2}
				}
				break
			}
		}
		return llmtest.Behavior{}
	}
	// A request with thinking on (Anthropic's) thinks first: thought, which
	// the tool loop must send back with its calls.
	const thought = "I should call the tools."
	h.up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		b := answer(r)
		if _, ok := r.Body["thinking"]; ok {
			b.Reasoning = thought
		}
		return b
	})

	npmTest(t, filepath.Join("..", "e2e", "openai-node"), "openai",
		"PARLEY_BASE_URL="+h.srv.URL+"/api/v1",
		"PARLEY_API_KEY="+key,
		"PARLEY_AI_PROVIDER_ID="+w.provider,
		"PARLEY_ANTHROPIC_AI_PROVIDER_ID="+anthropicProvider,
		"PARLEY_CHAT_ID="+w.chat,
		"PARLEY_MODEL=e2e-model",
		"PARLEY_FAKE_UPSTREAM=1",
	)

	// Every upstream call streamed as the client asked, and the stateless
	// ones carried the model the client named.
	reqs := h.up.Requests()
	if len(reqs) < 7 {
		t.Fatalf("the upstream got %d requests; did the node tests run?", len(reqs))
	}
	var models []string
	for _, r := range reqs {
		models = append(models, r.Model)
	}
	if got := strings.Join(models, ","); !strings.Contains(got, "e2e-model") || !strings.Contains(got, "fake-default") {
		t.Errorf("upstream models = %s, want the client's e2e-model (stateless) and fake-default (per chat)", got)
	}
	// The SDK, retrying 5xx on its own, sent each refused request once.
	refused := 0
	for _, r := range reqs {
		if n := len(r.Messages); n > 0 && strings.HasPrefix(r.Messages[n-1].Content, "REFUSE") {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("the upstream got %d refused requests, want 2 (one JSON, one stream; none retried)", refused)
	}
	protocols := map[llmtest.Protocol]int{}
	for _, r := range reqs {
		protocols[r.Protocol]++
	}
	if protocols[llmtest.Anthropic] < 3 {
		t.Errorf("the upstream got %d Anthropic requests, want the node tests' 3 or more", protocols[llmtest.Anthropic])
	}
	// The SDK's own spelling of the fields reached the upstream as Parley's
	// would have.
	spelled := 0
	for _, r := range reqs {
		if n := len(r.Messages); n > 0 && strings.HasPrefix(r.Messages[n-1].Content, "SPELLING") {
			spelled++
			if r.Body["max_tokens"] != 42.0 || r.Body["top_p"] != 0.5 || !r.Stream {
				t.Errorf("the SDK's max_tokens 42, top_p 0.5, stream reached the upstream as max_tokens %v, top_p %v, stream %v", r.Body["max_tokens"], r.Body["top_p"], r.Stream)
			}
		}
	}
	if spelled != 1 {
		t.Errorf("the upstream got %d requests spelled as the SDK does, want 1", spelled)
	}
	// runTools sent both calls' results back, through each provider, as
	// tool messages (OpenAI-wire) or tool_result blocks (Anthropic).
	answered := map[llmtest.Protocol][]string{}
	lists := 0
	for _, r := range reqs {
		if r.ListModels {
			lists++
			continue
		}
		if m := r.Messages[len(r.Messages)-1]; m.Role == "tool" || len(m.ToolResults) > 0 {
			var ids []string
			for _, m := range r.Messages {
				if m.ToolCallID != "" {
					ids = append(ids, m.ToolCallID)
				}
				for _, tr := range m.ToolResults {
					ids = append(ids, tr.ToolCallID+"="+tr.Content)
				}
			}
			answered[r.Protocol] = ids
		}
	}
	// models.list asked the provider once at both base URLs: the second
	// had the list kept.
	if lists != 1 {
		t.Errorf("the upstream got %d model list requests, want 1", lists)
	}
	if got := strings.Join(answered[llmtest.OpenAI], ","); got != "call_paris,call_now" {
		t.Errorf("runTools' results reached the OpenAI-wire upstream as %q, want call_paris,call_now", got)
	}
	if got := strings.Join(answered[llmtest.Anthropic], ","); got != "call_paris=18C,call_now=noon" {
		t.Errorf("runTools' results reached the Anthropic upstream as %q, want call_paris=18C,call_now=noon", got)
	}
	// The per-chat turns were stored as one conversation of six turns (the
	// stopped one with its partial reply, and the one with debug), one of
	// the turn sent three times with an Idempotency-Key, which went
	// upstream once, and one of the declined turn, which kept its refusal.
	convs := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)
	if len(convs) != 3 {
		t.Fatalf("conversations of the chat = %d, want 3", len(convs))
	}
	var msgs []any
	keyed, declined := 0, 0
	for _, c := range convs {
		cv := h.must(200, "GET", "/api/v1/conversations/"+c.(map[string]any)["id"].(string), h.admin, nil)
		switch m := cv["messages"].([]any); {
		case len(m) == 12:
			msgs = m
		case len(m) == 2 && m[1].(map[string]any)["refusal"] != nil:
			declined++
		case len(m) == 2:
			keyed++
		default:
			t.Fatalf("a conversation holds %d messages, want 12 (six turns) or 2 (the keyed turn, the declined one)", len(m))
		}
	}
	if msgs == nil || keyed != 1 || declined != 1 {
		t.Fatalf("conversations of 12 messages, of the keyed and of the declined turn: %v, %d, %d; want one of each", msgs != nil, keyed, declined)
	}
	once := 0
	for _, r := range reqs {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Content == "say this once" {
			once++
		}
	}
	if once != 1 {
		t.Errorf("the upstream got the keyed request %d times, want once", once)
	}
	if stopped := msgs[7].(map[string]any); stopped["finishReason"] != "client_disconnect" {
		t.Errorf("the stopped turn's reply: %v, want finishReason client_disconnect", stopped)
	}
	var history []string
	for _, r := range reqs {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Content == "go on" {
			for _, m := range r.Messages {
				history = append(history, m.Role)
			}
		}
	}
	if got := strings.Join(history, ","); got != "system,user,assistant,user,assistant,user,assistant,user,assistant,user" {
		t.Errorf("the continuation after the stop went upstream with the roles %s, want the stopped turn in its history", got)
	}
	// The refusal the client sent back went to the OpenAI-compatible
	// provider as the assistant's text.
	sentBack := false
	for _, r := range reqs {
		if n := len(r.Messages); n == 3 && r.Messages[2].Content == "then a joke" {
			sentBack = r.Messages[1].Role == "assistant" && r.Messages[1].Content == "I'm sorry, I can't help with that."
		}
	}
	if !sentBack {
		t.Error("the refusal the client sent back did not reach the provider as the assistant's text")
	}
	// Every completion, the failed one too, is recorded as usage (a model
	// list is not).
	h.app.FlushUsage()
	usage := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?groupBy=model", h.admin, nil)["data"].([]any)
	requests := 0.0
	for _, u := range usage {
		requests += u.(map[string]any)["requests"].(float64)
	}
	if int(requests) != len(reqs)-lists {
		t.Errorf("usage records %v requests, the upstream got %d completions", requests, len(reqs)-lists)
	}
	if strings.Contains(h.finalLogs(), upstreamKey) {
		t.Error("the logs contain the provider key")
	}
}

// e2eKeepAlive is the keep-alive interval of the Parley npm clients' tests
// run against, which their "SLOW" replies outlast, so that the clients
// read streams that open with keep-alive comments.
const e2eKeepAlive = 100 * time.Millisecond

// newE2E starts the Parley an npm client's tests run against when the
// variable enable is "1" (else it skips the test, saying what it runs): on
// SQLite with the fake upstream, a world, and the key of an editor of its
// project, whom the client calls as rather than the admin.
func newE2E(t *testing.T, enable, what string, configure ...func(*app.Config)) (h *harness, w world, key string) {
	t.Helper()
	if os.Getenv(enable) != "1" {
		t.Skip("set " + enable + "=1 to run " + what)
	}
	h = newHarness(t, dbtest.SQLite(t), func(c *app.Config) {
		c.KeepAlive = e2eKeepAlive
		for _, f := range configure {
			f(c)
		}
	})
	w = h.world()
	uid, key := h.user("npm-client")
	h.setRole(h.admin, w.project, uid, "editor")
	return h, w, key
}

// npmTest runs `npm test` in dir, whose `npm ci` must have installed the
// package named, with env added to the test's own.
func npmTest(t *testing.T, dir, installed string, env ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", installed)); err != nil {
		t.Fatalf("run npm ci in %s first: %v", dir, err)
	}
	cmd := exec.Command("npm", "test")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm test in %s: %v", dir, err)
	}
}
