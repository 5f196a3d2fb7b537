package llm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/parleyhq/parley/domain"
)

// thoughts remembers, for a while, the thinking each Anthropic reply that
// called tools carried in its first call's extra_content (thinkingExtra),
// and each OpenAI-compatible one's reasoning (withReasoningExtra), by that
// call's id and name, the caller it was made for (LLMRequest.Caller) and
// the provider key that made it: upstreams choose call ids, and some
// choose the same ones in every conversation (Kimi K2's
// "functions.weather:0"), so nothing less keeps one caller's thinking
// from going up in another's request. A client that sends the calls back
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

// thoughtKey names the thinking of call c made for caller (LLMRequest's)
// with apiKey: another caller, or a provider's key replaced by another's,
// never finds it.
func thoughtKey(caller string, apiKey domain.Secret, c domain.ToolCall) string {
	sum := sha256.Sum256([]byte(apiKey.Reveal()))
	return caller + "/" + hex.EncodeToString(sum[:8]) + "/" + c.Name + "/" + c.ID
}

// carriesThought says whether calls carry, in their first one's
// extra_content, the thinking that led to them under member, where the
// provider reads it back: domain.AnthropicExtra (thinkingExtra) or
// domain.ReasoningExtra (withReasoningExtra), which stands for the
// reasoning under either of its names (domain.ReasoningNamedExtra too).
// Another member does not
// count: a client that dropped extra_content but sent the message's
// reasoning_content back gets that as the call's reasoning, which is not
// Anthropic's signed thinking.
func carriesThought(calls []domain.ToolCall, member string) bool {
	if member == domain.ReasoningExtra && len(calls) > 0 && (domain.ExtraString(calls[0].ExtraContent, domain.ReasoningNamedExtra) != "" ||
		domain.ExtraMember(calls[0].ExtraContent, domain.ReasoningDetailsExtra) != nil) {
		return true // the same reasoning, by the name its reply gave it, or its details
	}
	if len(calls) == 0 || !bytes.Contains(calls[0].ExtraContent, []byte(`"`+member+`"`)) {
		return false
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(calls[0].ExtraContent, &members) != nil {
		return false
	}
	v := bytes.TrimSpace(members[member])
	return len(v) > 0 && !bytes.Equal(v, []byte("null")) && !bytes.Equal(v, []byte(`""`))
}

// remember keeps the thinking of res's calls, if they carry any under
// member.
func (t *thoughts) remember(caller string, apiKey domain.Secret, member string, res *domain.LLMResult, now time.Time) {
	if res == nil || !carriesThought(res.ToolCalls, member) {
		return
	}
	c := res.ToolCalls[0]
	if len(c.ID) > maxThoughtIDLen {
		return
	}
	key := thoughtKey(caller, apiKey, c)
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
// message whose calls came back without it under member; msgs itself when
// none did. The members remembered join those the first call came back
// with, which keep their values.
func (t *thoughts) restore(caller string, apiKey domain.Secret, member string, msgs []domain.LLMMessage, now time.Time) []domain.LLMMessage {
	var out []domain.LLMMessage
	for i, m := range msgs {
		if m.Role != domain.RoleAssistant || len(m.ToolCalls) == 0 {
			continue
		}
		carries := carriesThought(m.ToolCalls, member)
		if carries && !lacksDetails(m.ToolCalls, member) {
			continue
		}
		t.mu.Lock()
		th, ok := t.byKey[thoughtKey(caller, apiKey, m.ToolCalls[0])]
		t.mu.Unlock()
		if !ok || now.Sub(th.at) > thoughtsTTL || carries && domain.ExtraMember(th.extra, domain.ReasoningDetailsExtra) == nil {
			continue // none remembered, or nothing the calls lack
		}
		if out == nil {
			out = slices.Clone(msgs)
		}
		calls := slices.Clone(m.ToolCalls)
		extra := calls[0].ExtraContent
		if member == domain.AnthropicExtra {
			// The message's reasoning_content, which Anthropic does not
			// read, would leave the thinking beside it no room under
			// MaxExtraContent: the thinking is the same text.
			extra = domain.ExtraWithoutReasoning(extra)
		}
		calls[0].ExtraContent = joinExtra(extra, th.extra)
		out[i].ToolCalls = calls
	}
	if out == nil {
		return msgs
	}
	return out
}

// lacksDetails says whether calls, which carry their reasoning, came back
// without the reasoning_details it came with, if it did: a client that
// sends back the message's reasoning_content keeps the reasoning but not
// the details, which the memory then adds (joinExtra adds only what
// calls lack).
func lacksDetails(calls []domain.ToolCall, member string) bool {
	return member == domain.ReasoningExtra && domain.ExtraMember(calls[0].ExtraContent, domain.ReasoningDetailsExtra) == nil
}

// joinExtra returns extra, a tool call's extra_content, with the members
// of remembered it does not have; remembered when extra has none.
func joinExtra(extra, remembered []byte) []byte {
	if len(extra) == 0 {
		return remembered
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(remembered, &members) != nil {
		return extra
	}
	var have map[string]json.RawMessage
	if json.Unmarshal(extra, &have) != nil {
		return remembered
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if _, ok := have[name]; !ok {
			extra = domain.ExtraWith(extra, name, members[name])
		}
	}
	return extra
}
