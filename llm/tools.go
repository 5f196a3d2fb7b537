package llm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/parleyhq/parley/domain"
)

// toolCalls assembles the tool calls of a stream from their pieces and
// numbers them 0, 1, ... in the order they began, whatever indexes the
// upstream used (Anthropic numbers content blocks, text included).
type toolCalls struct {
	calls []domain.ToolCall
	args  []*strings.Builder
	joins []utf8Joiner // of each call's arguments, split as text may be
	upIDs []string     // the id the upstream gave each call, "" for none
	index map[int]int  // the upstream's index → ours
	last  int          // our index of the last piece, for pieces without one
}

// add records one piece of the call the upstream numbers key (nil when it
// sent no index: a piece with an id other than the last call's starts a
// new call, one without continues the last) and returns it as the delta
// to pass on. A piece that names a function under another id than the
// call at its index begins a new call under that index: Ollama numbers
// every call of a parallel batch 0, each whole in one piece. A piece that
// only changes the id continues the call (some servers give every piece
// an id of its own). A call that begins without an id gets one, so that
// the caller can answer it.
func (t *toolCalls) add(key *int, id, name, args string) domain.ToolCallDelta {
	var i int
	switch {
	case key != nil:
		i = t.at(*key)
		if id != "" && name != "" && t.upIDs[i] != "" && id != t.upIDs[i] {
			delete(t.index, *key)
			i = t.at(*key)
		}
	case len(t.calls) == 0 || (id != "" && id != t.upIDs[t.last]):
		i = t.at(-1 - len(t.calls)) // a key no upstream index takes
	default:
		i = t.last
	}
	t.last = i
	c := &t.calls[i]
	// The id and name go out once, with the call's first piece, as
	// OpenAI sends them: some upstreams repeat them on every piece, and
	// clients that merge pieces by appending their strings would read
	// "weatherweather".
	args = t.joins[i].next(args)
	d := domain.ToolCallDelta{Index: i, Arguments: args}
	if c.ID == "" {
		t.upIDs[i] = id
		if id == "" {
			id = newToolCallID()
		}
		c.ID, d.ID = id, id
	}
	if c.Name == "" {
		c.Name, d.Name = name, name
	}
	t.args[i].WriteString(args)
	return d
}

// at returns our index of the upstream's call key, beginning a call when
// key is new.
func (t *toolCalls) at(key int) int {
	if i, ok := t.index[key]; ok {
		return i
	}
	if t.index == nil {
		t.index = map[int]int{}
	}
	t.index[key] = len(t.calls)
	t.calls = append(t.calls, domain.ToolCall{Type: "function"})
	t.args = append(t.args, &strings.Builder{})
	t.joins = append(t.joins, utf8Joiner{})
	t.upIDs = append(t.upIDs, "")
	return len(t.calls) - 1
}

// keepExtra records extra, the extra_content the upstream sent with the
// piece d, on d's call and on d, when extraContent keeps it.
func (t *toolCalls) keepExtra(d *domain.ToolCallDelta, extra []byte) {
	if extra = extraContent(extra); extra != nil {
		t.calls[d.Index].ExtraContent, d.ExtraContent = extra, extra
	}
}

// extraContent is a tool call's extra_content as sent (a copy), nil unless
// it is a JSON object of at most domain.MaxExtraContent bytes, what a
// caller may send back: what Gemini puts its thought signature in, and
// what goes back with the call (see domain.ToolCall).
func extraContent(v []byte) []byte {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '{' || len(v) > domain.MaxExtraContent {
		return nil
	}
	return bytes.Clone(v)
}

// flush ends the calls' arguments, returning as deltas the start of a
// character one still held, which never ended (as U+FFFD).
func (t *toolCalls) flush() []domain.ToolCallDelta {
	var out []domain.ToolCallDelta
	for i := range t.joins {
		if held := t.joins[i].flush(); held != "" {
			t.args[i].WriteString(held)
			out = append(out, domain.ToolCallDelta{Index: i, Arguments: held})
		}
	}
	return out
}

// arguments returns the arguments of call i so far.
func (t *toolCalls) arguments(i int) string { return t.args[i].String() }

// result returns the whole calls, nil when there were none.
func (t *toolCalls) result() []domain.ToolCall {
	if len(t.calls) == 0 {
		return nil
	}
	out := make([]domain.ToolCall, len(t.calls))
	for i, c := range t.calls {
		c.Arguments = t.args[i].String()
		out[i] = c
	}
	return out
}

// newToolCallID names a tool call the upstream sent without an id.
func newToolCallID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "call_" + hex.EncodeToString(b)
}
