package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// A per-chat completion may carry an idempotency key (REST's
// Idempotency-Key header, MCP's idempotencyKey), so that a client whose
// response was lost can send the request again without a second turn: the
// same key on the same chat, with the same request, is answered with the
// turn stored for it, and nothing runs upstream or is stored. The key is
// kept on the stored reply, with a digest of the request; it lives as long
// as the reply, and goes with its conversation or chat.
//
// On one instance, a request whose key is still running is a Conflict,
// refused before it goes upstream. Across instances, the store's unique
// index refuses the later turn as it commits, and its caller is told to
// send the request again, which finds the earlier turn.

// maxIdempotencyKeyLen caps a key; a UUID is 36 characters.
const maxIdempotencyKeyLen = 255

// checkIdempotencyKey accepts 1 to maxIdempotencyKeyLen visible ASCII
// characters, or no key.
func checkIdempotencyKey(key string) error {
	if len(key) > maxIdempotencyKeyLen {
		return Invalidf("idempotencyKey", "the idempotency key has %d characters; the limit is %d (a UUID has 36)", len(key), maxIdempotencyKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return Invalidf("idempotencyKey", "the idempotency key may hold only visible ASCII characters (no spaces), such as a UUID; "+
				"character %d is not one", i+1)
		}
	}
	return nil
}

// requestDigest is what requestHash digests: the request as the client
// sent it, less what does not change the turn (debug; and stream, which
// is not a parameter).
type requestDigest struct {
	ConversationID string
	Params         CompletionParams
	// Left out when nil, so that keys stored before it came still match.
	MaxHistoryMessages *int `json:",omitempty"`
}

// requestHash is the digest of a per-chat completion's request, kept with
// its reply so that a key sent again with another request is told apart.
func requestHash(in ChatCompletion) string {
	d := requestDigest{ConversationID: in.ConversationID, Params: in.CompletionParams, MaxHistoryMessages: in.MaxHistoryMessages}
	d.Params.Debug = false
	b, err := json.Marshal(d)
	if err != nil { // plain data: strings, numbers, slices and pointers to them
		panic("domain: requestHash: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// keyClaim is a completion's hold on its idempotency key on this instance,
// from before the stored turns are read until its own turn is stored.
type keyClaim struct {
	s   *Completions
	key string
}

func (c *keyClaim) release() { c.s.keyed.Delete(c.key) }

// planReplay looks for the turn stored for in's idempotency key, once the
// chat and the caller's permission are known and the request is valid.
// It sets pl.requestKey and pl.requestHash, for the turn to be stored with
// them; pl.replay when a turn is stored already; and pl.keyClaim, which
// the caller releases once the completion's turn is stored or it failed.
// A key that another completion on this instance holds, with no turn
// stored yet, is a Conflict.
func (s *Completions) planReplay(ctx context.Context, pl *plan, in ChatCompletion) error {
	if in.IdempotencyKey == "" {
		return nil
	}
	pl.requestKey, pl.requestHash = pl.chat.ID+":"+in.IdempotencyKey, requestHash(in)
	if _, busy := s.keyed.LoadOrStore(pl.requestKey, struct{}{}); !busy {
		pl.keyClaim = &keyClaim{s: s, key: pl.requestKey}
	}
	// Read even when another completion holds the key: it may have stored
	// its turn already, and be about to answer.
	reply, err := s.deps.Store.GetReplyByRequestKey(ctx, pl.requestKey)
	switch {
	case KindOf(err) == NotFound && pl.keyClaim == nil:
		e := Errorf(Conflict, "a completion with this idempotency key is still running for chat %s; "+
			"wait a moment, then send this request again to get its reply", pl.chat.ID)
		// Its Retry-After paces the OpenAI SDKs, which retry a 409 twice on
		// their own, half a second and a second apart without one.
		e.RetryAfter = stillRunningRetry
		return e
	case KindOf(err) == NotFound:
		return nil
	case err != nil:
		return Wrap("completions.ForChat", err)
	case reply.RequestHash != pl.requestHash:
		return Invalidf("idempotencyKey", "this idempotency key was used for another request to chat %s (stored in conversation %s); "+
			"send a new key with a new request", pl.chat.ID, reply.ConversationID)
	}
	pl.replay = reply
	return nil
}

// stillRunningRetry is the wait a request whose idempotency key is still
// running is told to take before it is sent again.
const stillRunningRetry = 2 * time.Second

// replay answers a completion with the reply stored for its idempotency
// key, as the first request's answer had it: the same ids, model, content
// or refusal, tool calls (their extra content too), finish reason and
// usage. A stream gets its text (or refusal) in one delta, then each tool
// call in one of its own, as a live stream sends them: the OpenAI SDKs'
// stream accumulators see a call finished only when the next begins, one
// a chunk. Nothing is sent upstream or counted against the project's
// limits, so no usage is recorded and there is no debug.
func replay(m *Message, emit Emitter) (*Completion, error) {
	out := &Completion{
		CompletionMeta: CompletionMeta{MessageID: m.ID, ConversationID: m.ConversationID, Model: m.Model, Created: m.CreatedAt,
			Replayed: true},
		Content: m.Content, Refusal: m.Refusal, ToolCalls: m.ToolCalls, FinishReason: m.FinishReason, Usage: m.Usage,
	}
	if emit == nil {
		return out, nil
	}
	if err := emit.Start(out.CompletionMeta); err != nil {
		return nil, err
	}
	d := Delta{Content: m.Content, Refusal: m.Refusal}
	for i, c := range m.ToolCalls {
		d.ToolCalls = append(d.ToolCalls, ToolCallDelta{Index: i, ID: c.ID, Name: c.Name, Arguments: c.Arguments, ExtraContent: c.ExtraContent})
	}
	if d.Content == "" && d.Refusal == "" && len(d.ToolCalls) == 0 {
		return out, nil
	}
	for _, part := range d.split() {
		if err := emit.Delta(part); err != nil {
			return nil, err
		}
	}
	return out, nil
}
