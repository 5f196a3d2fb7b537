package llm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/parleyhq/parley/domain"
)

// thoughts remembers, for a while, the thinking each Anthropic reply that
// called tools carried in its first call's extra_content (thinkingExtra),
// and each OpenAI-compatible one's reasoning (withReasoningExtra), by that
// call's id and the key that made it. A client that sends the calls back
// without their extra_content still has them go back with their thinking,
// which Anthropic and DeepSeek's thinking mode require: OpenAI's SDKs'
// tool helpers (runTools) rebuild an assistant message from the fields
// they know, as LangChain and the AI SDK keep a tool call's id, name and
// arguments only. Per instance and bounded: the stored turn of a per-chat
// completion, or a client that keeps extra_content, needs none of it.
type thoughts struct {
	mu    sync.Mutex
	byKey map[string]thought
	order []string // byKey's keys, oldest first
	bytes int
}

type thought struct {
	extra []byte
	at    time.Time
}

// Bounds of the thinking remembered: a tool loop's results come back
// within minutes. Past a bound the oldest goes; one past its TTL is not
// used, and goes in its turn.
const (
	thoughtsTTL      = 30 * time.Minute
	maxThoughts      = 10_000
	maxThoughtsBytes = 16 << 20
	// maxThoughtIDLen is the longest tool call id a request may send back
	// (domain's bound): a call with a longer one never comes back, and an
	// upstream that names calls at megabytes must not fill the memory.
	maxThoughtIDLen = 256
)

// thoughtKey names the thinking of call id made with apiKey: another key,
// another tenant's, never finds it.
func thoughtKey(apiKey domain.Secret, id string) string {
	sum := sha256.Sum256([]byte(apiKey.Reveal()))
	return hex.EncodeToString(sum[:8]) + "/" + id
}

// carriesThought says whether calls carry the thinking that led to them
// in their first one's extra_content: Anthropic's (thinkingExtra) or an
// OpenAI-wire reply's reasoning (withReasoningExtra).
func carriesThought(calls []domain.ToolCall) bool {
	return len(calls) > 0 && (thinkingBlocks(calls) != nil || domain.ExtraString(calls[0].ExtraContent, domain.ReasoningExtra) != "")
}

// remember keeps the thinking of res's calls, if they carry any.
func (t *thoughts) remember(apiKey domain.Secret, res *domain.LLMResult, now time.Time) {
	if res == nil || !carriesThought(res.ToolCalls) {
		return
	}
	c := res.ToolCalls[0]
	if len(c.ID) > maxThoughtIDLen {
		return
	}
	key := thoughtKey(apiKey, c.ID)
	extra := bytes.Clone(c.ExtraContent) // no more than its length kept
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey == nil {
		t.byKey = map[string]thought{}
	}
	if old, ok := t.byKey[key]; ok {
		t.bytes -= len(key) + len(old.extra)
	} else {
		t.order = append(t.order, key)
	}
	t.byKey[key] = thought{extra: extra, at: now}
	t.bytes += len(key) + len(extra)
	for len(t.byKey) > maxThoughts || t.bytes > maxThoughtsBytes {
		oldest := t.order[0]
		t.order = t.order[1:]
		t.bytes -= len(oldest) + len(t.byKey[oldest].extra)
		delete(t.byKey, oldest)
	}
}

// restore returns msgs with the thinking remembered for each assistant
// message whose calls came back without it; msgs itself when none did.
func (t *thoughts) restore(apiKey domain.Secret, msgs []domain.LLMMessage, now time.Time) []domain.LLMMessage {
	var out []domain.LLMMessage
	for i, m := range msgs {
		if m.Role != domain.RoleAssistant || len(m.ToolCalls) == 0 || carriesThought(m.ToolCalls) {
			continue
		}
		t.mu.Lock()
		th, ok := t.byKey[thoughtKey(apiKey, m.ToolCalls[0].ID)]
		t.mu.Unlock()
		if !ok || now.Sub(th.at) > thoughtsTTL {
			continue
		}
		if out == nil {
			out = slices.Clone(msgs)
		}
		calls := slices.Clone(m.ToolCalls)
		calls[0].ExtraContent = th.extra
		out[i].ToolCalls = calls
	}
	if out == nil {
		return msgs
	}
	return out
}
