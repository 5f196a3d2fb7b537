package domain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// StatelessCompletion is the input of Completions.Stateless
// (POST /chats/completions, MCP create-chat-completion).
type StatelessCompletion struct {
	AIProviderID  string
	SystemMessage string
	CompletionParams
}

// ChatCompletion is the input of Completions.ForChat
// (POST /chats/{chatId}/completions, MCP create-chat-completion-for-chat).
type ChatCompletion struct {
	ChatID         string
	ConversationID string
	// IdempotencyKey, when set, names the request: sent again with the
	// same request, it is answered with the turn stored for it (see
	// planReplay).
	IdempotencyKey string
	// MaxHistoryMessages, when set, sends at most this many of the
	// conversation's latest stored messages upstream (see recentHistory);
	// all of them when nil. The conversation keeps every message.
	MaxHistoryMessages *int
	CompletionParams
}

// CompletionMeta identifies a completion; a stream announces it first.
type CompletionMeta struct {
	MessageID      string
	ConversationID string // per-chat completions only
	Model          string
	Created        time.Time
	// Replayed is set when a stored turn answers a request sent again
	// with its idempotency key (see replay).
	Replayed bool
}

// Completion is a finished completion.
type Completion struct {
	CompletionMeta
	Content      string
	Refusal      string // see LLMResult
	Reasoning    string // see LLMResult
	ToolCalls    []ToolCall
	FinishReason string
	Usage        Usage
	Debug        *Debug
	// Quotas are what was left of the project's limits that admitted the
	// completion, as Emitter.Admitted has them; none when none applied.
	Quotas []Quota
}

// Debug shows how a completion was resolved (request field debug: true).
type Debug struct {
	ProviderID   string
	ProviderName string
	ProviderType ProviderType
	Model        string
	Messages     []LLMMessage // as sent upstream, secrets redacted
	QueueTime    time.Duration
	FirstByte    time.Duration
	Total        time.Duration
}

// Emitter receives a streamed completion: Admitted once it is admitted
// under the project's limits, when any applied, before the call upstream;
// Start once, before the first delta (and before the call returns, even
// for an empty reply), then each delta in order: text, and tool calls
// piece by piece in OpenAI's shape. An error from Start or Delta aborts
// the completion.
type Emitter interface {
	// Admitted has what is left of each limit that admitted the
	// completion: those Limiter.Allow reports, in its order, then the
	// open streams of the project and of the key.
	Admitted(quotas []Quota)
	Start(meta CompletionMeta) error
	Delta(d Delta) error
}

// Completions runs completions, stateless or per chat.
type Completions struct {
	deps      Deps
	access    access
	providers *Providers
	limits    *Limits
	// modelLists keeps the providers' model lists (see models).
	modelLists modelLists

	// continuing maps the ids of the conversations that completions on
	// this instance are continuing, or starting, to their *continuation. A
	// second continuation of one of them is refused before it goes
	// upstream: both would send the same history, and only the first
	// stored could keep its turn, after the other's reply was paid for.
	// Instances do not share it; across instances the store refuses the
	// later turn as it commits.
	continuing sync.Map
	// deletions counts abandon's calls: a first turn that saw it change
	// between reading its chat and claiming its conversation, when no
	// claim of it could be stopped, reads its chat again.
	deletions atomic.Uint64
	// keyed holds the idempotency keys (chat-scoped, see planReplay) of
	// the completions running on this instance.
	keyed sync.Map
	// writesRefused is when the database last refused a write (a turn,
	// usage records) because it took no writes (ErrNoWrites), in Unix
	// nanoseconds; 0 once a turn was stored. refusedUnreachable says the
	// refusal was of a database out of reach. See StoringRefused.
	writesRefused      atomic.Int64
	refusedUnreachable atomic.Bool
}

// noWritesBackoff is how long after the database refused a write, for
// taking no writes, per-chat completions are refused before they go
// upstream: each would be paid for, then not stored. A turn stored ends it
// at once, and so does any write once a database that was out of reach
// answers (the usage records, retried in the background, tell); else the
// first completion after it goes through, and tells. A small write that
// goes through does not say a turn would (a disk nearly full).
const noWritesBackoff = 5 * time.Second

// noteTurnWrite learns from err, the result of a turn's write, whether the
// database takes writes: an ErrNoWrites starts noWritesBackoff, a success
// ends it.
func (s *Completions) noteTurnWrite(err error) {
	switch {
	case err == nil:
		if s.writesRefused.Load() != 0 {
			s.writesRefused.Store(0)
		}
	case errors.Is(err, ErrNoWrites):
		s.refusedUnreachable.Store(errors.Is(err, ErrUnreachable))
		s.writesRefused.Store(s.deps.Now().UnixNano())
	}
}

// NoteUsageWrite learns from err, the result of a write of usage records
// (UsageBatcher.ReportWrites), whether the database takes writes: an
// ErrNoWrites starts noWritesBackoff, and a success ends one that a
// database out of reach started.
func (s *Completions) NoteUsageWrite(err error) {
	if err == nil && !s.refusedUnreachable.Load() {
		return
	}
	s.noteTurnWrite(err)
}

// StoringRefused is the Unavailable error, with the wait in RetryAfter,
// of a per-chat completion sent within noWritesBackoff of the database
// refusing a write (it is unreachable, out of disk or read-only); nil
// otherwise. Readiness checks report it too, so that a load balancer
// sends the completions to an instance that can store them.
func (s *Completions) StoringRefused() error {
	at := s.writesRefused.Load()
	if at == 0 {
		return nil
	}
	ago := s.deps.Now().Sub(time.Unix(0, at))
	if ago < 0 || ago >= noWritesBackoff {
		return nil // a clock stepped back ends it rather than stretch it
	}
	return &Error{Kind: Unavailable, RetryAfter: noWritesBackoff - ago,
		Message: fmt.Sprintf("the database refused a write %s ago (it is unreachable, out of disk or read-only); "+
			"nothing was sent to the AI provider, whose reply could not be stored: retry later", ago.Round(time.Millisecond))}
}

// continuation is a completion's claim on the conversation it continues,
// or starts.
type continuation struct {
	s        *Completions
	id       string
	chatID   string        // the conversation's chat
	project  string        // the chat's project
	starting bool          // a first turn's: the conversation is stored with it
	storing  atomic.Bool   // its turn is being stored: the claim ends within a commit
	done     chan struct{} // closed when the claim ends
	// stop ends the completion holding the claim with the cause: its
	// conversation, chat or project was deleted (abandon). nil for the
	// retention sweep's.
	stop context.CancelCauseFunc
}

// claim takes conversation id of chat chatID for one completion: before a
// continuation reads its history, or as a first turn makes up the id. A
// conversation that another completion holds is a Conflict, unless that
// one is storing its turn: claim then waits for it, so that the history
// read next holds that turn (a client that saw the turn stored, or the
// stream's [DONE], and continues at once is not refused).
func (s *Completions) claim(ctx context.Context, id string, chat *Chat, starting bool, stop context.CancelCauseFunc) (*continuation, error) {
	c := &continuation{s: s, id: id, chatID: chat.ID, project: chat.ProjectID, starting: starting, done: make(chan struct{}), stop: stop}
	for {
		v, busy := s.continuing.LoadOrStore(id, c)
		if !busy {
			return c, nil
		}
		other := v.(*continuation)
		if !other.storing.Load() {
			what := "continued"
			if other.starting {
				what = "started"
			}
			return nil, Errorf(Conflict, "conversation %s is being %s by another request; wait for its reply, then send this request again", id, what)
		}
		select {
		case <-other.done:
		case <-ctx.Done():
			return nil, Errorf(Unavailable, "conversation %s is still being stored by another request; send this request again", id)
		}
	}
}

// HoldForSweep claims conversation id for the retention sweep, which is
// about to delete it, until release: a completion that would continue it
// meanwhile waits, as for a turn being stored, and then finds it gone
// before anything goes upstream, where between the sweep's check and its
// delete it read the history, paid for a reply, and could not store it.
// nil when a completion on this instance is continuing (or starting) it:
// the sweep keeps it.
func (s *Completions) HoldForSweep(id string) (release func()) {
	c := &continuation{s: s, id: id, done: make(chan struct{})}
	c.storing.Store(true)
	if _, busy := s.continuing.LoadOrStore(id, c); busy {
		return nil
	}
	return c.release
}

// starting reports whether a first turn on this instance is starting
// conversation id of chat chatID: a stream announces the id in its first
// chunk, but the conversation is stored only with the turn.
func (s *Completions) starting(id, chatID string) bool {
	c := s.startingClaim(id)
	return c != nil && c.chatID == chatID
}

// startingClaim returns the claim of the first turn on this instance that
// is starting conversation id; nil when none is.
func (s *Completions) startingClaim(id string) *continuation {
	v, ok := s.continuing.Load(id)
	if !ok || !v.(*continuation).starting {
		return nil
	}
	return v.(*continuation)
}

// errDeleted is within the cause of a completion that abandon ended.
var errDeleted = errors.New("deleted while the completion ran")

// deletedOr is the cause of ctx when abandon ended it, which err (a
// read cancelled under it, as it planned or was admitted) would hide; else
// err.
func deletedOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errDeleted) {
		return cause
	}
	return err
}

// abandon ends the completions running on this instance in conversations
// that deleted matches (a deleted conversation's, chat's or project's,
// what, id), from the claim their planning takes: their reply could not
// be stored, so it stops being generated and paid for, and the client is
// told at once rather than after the whole reply. (A turn already being
// stored is not stopped: storing ignores cancellation.) Another
// instance's run to their end, and are told when their turn is not
// stored.
func (s *Completions) abandon(deleted func(*continuation) bool, what, id string) {
	if s == nil {
		return
	}
	s.deletions.Add(1)
	s.continuing.Range(func(_, v any) bool {
		if c := v.(*continuation); c.stop != nil && deleted(c) {
			e := Errorf(NotFound, "%s %s was deleted while this completion ran: the reply was stopped and not stored", what, id)
			e.Err = errDeleted
			c.stop(e)
		}
		return true
	})
}

// release ends the claim.
func (c *continuation) release() {
	c.s.continuing.CompareAndDelete(c.id, c)
	close(c.done)
}

// plan is a resolved completion, ready to call upstream.
type plan struct {
	started  time.Time
	claim    *continuation // held while continuing or starting a conversation
	keyClaim *keyClaim     // held while a completion with an idempotency key runs
	provider *AIProvider
	chat     *Chat         // nil for stateless
	conv     *Conversation // the conversation to append to (per chat)
	newConv  bool
	history  []Message // the conversation's stored messages
	window   []Message // what goes upstream of them: all, or the latest (maxHistoryMessages)
	system   string
	sources  []Document // the documents the request names as context (dataSources, names)
	turn     []Message  // the request's non-system messages, resolved
	params   CompletionParams
	// maxHistory is the request's maxHistoryMessages, nil for all.
	maxHistory *int
	stop       context.CancelCauseFunc // ends the completion, for its claim
	model      string
	// requestKey and requestHash go with the reply when the request has
	// an idempotency key; replay is the reply stored for it before.
	requestKey, requestHash string
	replay                  *Message
}

// release gives up what the plan holds; its turn is stored, or will not be.
func (pl *plan) release() {
	if pl.claim != nil {
		pl.claim.release()
	}
	if pl.keyClaim != nil {
		pl.keyClaim.release()
	}
}

// Stateless runs a completion with the provider named in the request. It
// needs no chats:* permission, only aiProviders:UseAIProvider on the
// provider's project, and stores a usage record only. emit is nil for a
// non-streamed call.
func (s *Completions) Stateless(ctx context.Context, in StatelessCompletion, emit Emitter) (*Completion, error) {
	return s.complete(ctx, emit, func(ctx context.Context, _ context.CancelCauseFunc) (*plan, error) { return s.planStateless(ctx, in) })
}

// ForChat runs a completion with a chat's provider, system message and
// model, and stores the turn in a conversation: a new one, or the one
// named by ConversationID, whose history goes upstream first.
func (s *Completions) ForChat(ctx context.Context, in ChatCompletion, emit Emitter) (*Completion, error) {
	return s.complete(ctx, emit, func(ctx context.Context, stop context.CancelCauseFunc) (*plan, error) {
		return s.planForChat(ctx, in, stop)
	})
}

// complete plans a completion with planner, admits it under the project's
// limits and runs it. Planning and admission read the database (and
// Redis), so they are bounded by RequestTimeout, as the transports bound
// every other request: a database that hangs answers Unavailable instead
// of holding the caller. The upstream call is not: a healthy stream may
// run for hours, bounded only by MaxStreamDuration. A per-chat plan's
// claim holds stop, which a delete of what it stores its turn in calls
// (abandon), from planning on.
func (s *Completions) complete(ctx context.Context, emit Emitter, planner func(context.Context, context.CancelCauseFunc) (*plan, error)) (*Completion, error) {
	started := time.Now()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	bounded, cancel := context.WithTimeout(ctx, s.deps.RequestTimeout)
	defer cancel()
	pl, err := planner(bounded, stop)
	if err != nil {
		return nil, deletedOr(ctx, err)
	}
	defer pl.release()
	if pl.replay != nil {
		return replay(pl.replay, emit)
	}
	pl.started = started
	if err := pl.params.validateFor(pl.provider.Type); err != nil {
		return nil, err
	}
	endpoint, err := s.providers.endpoint(pl.provider)
	if err != nil {
		return nil, err
	}
	req := pl.request(endpoint)
	req.Caller = callerOf(ctx, pl.provider.ID)
	if err := s.deps.LLM.Check(req); err != nil {
		// Refused as the provider's adapter would refuse it, before it
		// counts against a limit or is recorded: nothing goes upstream.
		return nil, err
	}
	if ctx.Err() != nil {
		// The caller left, or the server ended the call, while it waited
		// (over stdio, a call queued behind the others running when the agent
		// closed its input): nothing goes upstream, and, as for any request
		// refused before a call upstream, no usage is recorded.
		return nil, s.endedByServer(ctx, Errorf(Canceled, "the completion was cancelled before it was sent upstream"))
	}
	if pl.conv != nil {
		// Checked once the request is known to be right: a caller's
		// mistake is a 400 whatever the database does.
		if err := s.StoringRefused(); err != nil {
			return nil, err
		}
	}
	p, _ := PrincipalFrom(ctx)
	adm, quotas, release, err := s.admit(bounded, pl.provider.ProjectID, p, req, emit != nil)
	cancel() // its timer need not last the stream
	if err != nil {
		return nil, deletedOr(ctx, err)
	}
	defer release()
	if emit != nil && len(quotas) > 0 {
		emit.Admitted(quotas)
	}
	return s.run(ctx, pl, req, p, adm, quotas, emit)
}

// AdmittedError is the error of a completion that failed once admitted
// and run (the provider failed or refused, the turn could not be stored):
// the request counted against the project's limits, and Quotas are what is
// left of them, as a Completion's are; Debug is what went upstream, when
// the request asked for debug. It unwraps to the error.
type AdmittedError struct {
	Err    error
	Quotas []Quota
	Debug  *Debug
}

func (e *AdmittedError) Error() string { return e.Err.Error() }
func (e *AdmittedError) Unwrap() error { return e.Err }

// admittedError is the error of a completion that failed once admitted:
// an AdmittedError when it has quotas or debug to carry.
func admittedError(err error, quotas []Quota, debug *Debug) error {
	if len(quotas) == 0 && debug == nil {
		return err
	}
	return &AdmittedError{Err: err, Quotas: quotas, Debug: debug}
}

// QuotasOf returns the quotas of a completion's error, if its limits had
// admitted it.
func QuotasOf(err error) []Quota {
	var e *AdmittedError
	if errors.As(err, &e) {
		return e.Quotas
	}
	return nil
}

// DebugOf returns the debug of a completion's error, if its request asked
// for debug and it failed once it ran.
func DebugOf(err error) *Debug {
	var e *AdmittedError
	if errors.As(err, &e) {
		return e.Debug
	}
	return nil
}

// planStateless resolves a stateless completion: its provider, the
// caller's permission, and the messages.
func (s *Completions) planStateless(ctx context.Context, in StatelessCompletion) (*plan, error) {
	if err := checkRef("aiProviderId", PrefixProvider, in.AIProviderID); err != nil {
		return nil, err
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	if err := checkText("systemMessage", in.SystemMessage, false, maxTextLen); err != nil {
		return nil, err
	}
	prov, err := lookup(ctx, PrefixProvider, "AI provider", in.AIProviderID, s.deps.Store.GetProvider)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, prov.ProjectID, PermUseProvider, "AI provider", in.AIProviderID); err != nil {
		return nil, err
	}
	if err := s.checkDebug(ctx, in.CompletionParams, prov.ProjectID, PermGetProvider, "AI provider", in.AIProviderID,
		"the AI provider's configuration"); err != nil {
		return nil, err
	}
	pl := &plan{provider: prov, system: in.SystemMessage, params: in.CompletionParams}
	if err := s.resolveMessages(ctx, pl, prov.ProjectID); err != nil {
		return nil, err
	}
	pl.model = firstNonEmpty(in.Model, prov.DefaultModel)
	return pl, nil
}

// planForChat resolves a completion for a chat: the chat, the caller's
// permission, the conversation and its history, the messages and the
// chat's provider.
func (s *Completions) planForChat(ctx context.Context, in ChatCompletion, stop context.CancelCauseFunc) (_ *plan, err error) {
	deletions := s.deletions.Load()
	chat, err := lookup(ctx, PrefixChat, "chat", in.ChatID, s.deps.Store.GetChat)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, chat.ProjectID, PermCreateChatCompletion, "chat", in.ChatID); err != nil {
		return nil, err
	}
	if err := s.checkDebug(ctx, in.CompletionParams, chat.ProjectID, PermGetChat, "chat", in.ChatID, "the chat's configuration"); err != nil {
		return nil, err
	}
	if in.ConversationID != "" {
		// Continuing needs no right to read the conversation, but debug
		// shows its history as it went upstream.
		if err := s.checkDebug(ctx, in.CompletionParams, chat.ProjectID, PermGetConversation, "chat", in.ChatID,
			"the history of the conversation that conversationId continues"); err != nil {
			return nil, err
		}
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	if err := checkIdempotencyKey(in.IdempotencyKey); err != nil {
		return nil, err
	}
	if n := in.MaxHistoryMessages; n != nil && (*n < 0 || *n > MaxHistoryMessages) {
		return nil, Invalidf("maxHistoryMessages", "maxHistoryMessages must be from 0 to %d (the most messages a conversation may hold to be continued), got %d; "+
			"leave it out to send the whole history", MaxHistoryMessages, *n)
	}
	pl := &plan{chat: chat, system: chat.SystemMessage, params: in.CompletionParams, maxHistory: in.MaxHistoryMessages, stop: stop}
	// The plan's claims go back unless it is returned: on an error, and
	// on a panic (which REST and MCP recover), whose claims would else
	// refuse the conversation and the key until a restart.
	planned := false
	defer func() {
		if !planned {
			pl.release()
		}
	}()
	if err = s.planReplay(ctx, pl, in); err != nil {
		return nil, err
	}
	if pl.replay != nil {
		planned = true
		return pl, nil
	}
	if in.ConversationID != "" {
		err = s.planContinuation(ctx, pl, in.ConversationID)
	} else {
		err = s.planFirstTurn(ctx, pl, deletions)
	}
	if err != nil {
		return nil, err
	}
	if err := s.resolveMessages(ctx, pl, chat.ProjectID); err != nil {
		return nil, err
	}
	if pl.provider, err = s.deps.Store.GetProvider(ctx, chat.AIProviderID); err != nil {
		return nil, Wrap("completions.ForChat", err)
	}
	pl.model = firstNonEmpty(in.Model, chat.Model, pl.provider.DefaultModel)
	planned = true
	return pl, nil
}

// planContinuation claims conversation id of the plan's chat, which the
// completion continues, and reads its history.
func (s *Completions) planContinuation(ctx context.Context, pl *plan, id string) error {
	chat := pl.chat
	conv, err := lookup(ctx, PrefixConversation, "conversation", id, s.deps.Store.GetConversation)
	if KindOf(err) == NotFound && s.starting(id, chat.ID) {
		// The id of a first turn still running here, which its stream
		// announced (a client that stopped the stream and continues at
		// once): as for a conversation being continued, a Conflict while
		// the reply is generated, and a wait while the turn is stored; not
		// a conversation that does not exist.
		if pl.claim, err = s.claim(ctx, id, chat, false, pl.stop); err != nil {
			return err
		}
		conv, err = lookup(ctx, PrefixConversation, "conversation", id, s.deps.Store.GetConversation)
	}
	if err != nil {
		return err
	}
	if conv.ChatID != chat.ID {
		// Another chat's: not found here, as DESIGN.md has it, but said
		// whose to a caller who may read it (an agent with several chats
		// took a plain not-found for a deleted conversation), a plain
		// not-found to anyone else.
		if s.access.check(ctx, conv.ProjectID, PermGetConversation, "conversation", id) == nil {
			e := Errorf(NotFound, "conversation %s belongs to chat %s, not %s: continue it with chatId %s", id, conv.ChatID, chat.ID, conv.ChatID)
			e.Details = map[string]any{"field": "conversationId", "chatId": conv.ChatID}
			return e
		}
		return NotFoundf("conversation", id)
	}
	if pl.claim == nil {
		if pl.claim, err = s.claim(ctx, conv.ID, chat, false, pl.stop); err != nil {
			return err
		}
	}
	if pl.history, err = s.deps.Store.ListMessages(ctx, conv.ID); err != nil {
		return Wrap("completions.ForChat", err)
	}
	if len(pl.history) == 0 {
		// Every conversation is stored with a turn: one with no messages
		// was deleted since it was looked up (a retention sweep's hold
		// kept the claim waiting for it, or a delete came between), and
		// its reply, paid for, could not be stored.
		return NotFoundf("conversation", id)
	}
	// The cap is on the conversation, not on what a continuation sends
	// of it: GET answers it whole.
	if n := historyBytes(pl.history); n > maxHistoryBytes {
		return Errorf(TooLarge, "conversation %s holds %d messages and %d bytes (a message counts %d bytes besides its text), "+
			"more than the %d a conversation may hold to be continued; start a new conversation (leave out conversationId)",
			conv.ID, len(pl.history), n, messageOverhead, maxHistoryBytes)
	}
	pl.window = pl.history
	if pl.maxHistory != nil {
		pl.window = recentHistory(pl.history, *pl.maxHistory)
	}
	pl.conv = conv
	return nil
}

// HistoryCutNote is the user message that opens a history cut by
// maxHistoryMessages before a reply: a conversation must begin with a user
// message (Anthropic refuses one that begins with the model's reply), and
// the model is told why it does not see the start.
const HistoryCutNote = "(The earlier messages of this conversation are left out.)"

// recentHistory is what goes upstream of a conversation's stored messages
// under maxHistoryMessages n: the last n, less the tool results at its
// start, whose call is left out (providers refuse a result without it),
// opened by HistoryCutNote when it then begins with a reply (an agent's
// tool loop can run for hundreds of messages after its user message).
func recentHistory(stored []Message, n int) []Message {
	if n >= len(stored) {
		return stored
	}
	recent := stored[len(stored)-n:]
	for len(recent) > 0 && recent[0].Role == RoleTool {
		recent = recent[1:]
	}
	if len(recent) == 0 || recent[0].Role == RoleUser {
		return recent
	}
	return append([]Message{{Role: RoleUser, Content: HistoryCutNote}}, recent...)
}

// planFirstTurn makes up the conversation that the completion starts in
// the plan's chat, stored with its turn, and claims it. deletions is
// s.deletions when the chat was read: a delete on this instance since
// (its chat's or project's?) found no claim to stop, so the chat is read
// again, from the database.
func (s *Completions) planFirstTurn(ctx context.Context, pl *plan, deletions uint64) error {
	now := s.deps.Now()
	pl.conv = &Conversation{ID: NewID(PrefixConversation), ProjectID: pl.chat.ProjectID, ChatID: pl.chat.ID, CreatedAt: now, UpdatedAt: now}
	pl.newConv = true
	var err error
	if pl.claim, err = s.claim(ctx, pl.conv.ID, pl.chat, true, pl.stop); err != nil {
		return err // a new id: no other completion holds it
	}
	if s.deletions.Load() != deletions {
		_, err = lookup(WithFreshReads(ctx), PrefixChat, "chat", pl.chat.ID, s.deps.Store.GetChat)
	}
	return err
}

// historyBytes is the size of a conversation as maxHistoryBytes counts
// it: its messages' content, refusals and tool calls, and messageOverhead
// for each message.
func historyBytes(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += messageOverhead + len(m.Content) + len(m.Refusal)
		for _, c := range m.ToolCalls {
			n += len(c.Name) + len(c.Arguments) + len(c.ExtraContent)
		}
	}
	return n
}

// checkDebug lets debug: true through only for a caller who may read what
// it shows (shows, in the error): the chat's configuration (perm
// chats:GetChat) or, stateless, the provider's (aiProviders:GetAIProvider),
// and the history of a conversation it continues
// (conversations:GetConversation). The base policy gives all three to
// every role that runs completions; the check keeps the rule when a policy
// does not.
func (s *Completions) checkDebug(ctx context.Context, p CompletionParams, projectID string, perm Permission, what, id, shows string) error {
	if !p.Debug {
		return nil
	}
	err := s.access.check(ctx, projectID, perm, what, id)
	if KindOf(err) == Forbidden {
		return Errorf(Forbidden, "debug: true shows %s, and your role does not allow %s; send the request without debug", shows, perm)
	}
	return err
}

// checkDocuments checks that the caller may read project projectID's
// documents, which a documentId message (messages[i], the first) sends
// upstream as they are: running completions does not of itself allow it.
func (s *Completions) checkDocuments(ctx context.Context, projectID string, i int) error {
	err := s.access.check(ctx, projectID, PermGetDocument, "project", projectID)
	if KindOf(err) == Forbidden {
		return Errorf(Forbidden, "messages[%d].documentId sends a document's content, and your role does not allow %s; send the text as content instead",
			i, PermGetDocument)
	}
	return err
}

// resolveMessages takes the request's system message out as the override,
// resolves documentId messages to their content, then the documents the
// request names as context (resolveDataSources). Documents must lie in
// projectID.
func (s *Completions) resolveMessages(ctx context.Context, pl *plan, projectID string) error {
	docs := map[string]*Document{}
	resolved := 0 // bytes of the request's messages, documents resolved
	var calls toolCallTracker
	for _, m := range pl.history {
		calls.see(-1, m.Role, m.ToolCalls, m.ToolCallID)
	}
	if len(pl.history) > 0 && len(pl.window) == 0 && len(pl.history[len(pl.history)-1].ToolCalls) > 0 {
		// maxHistoryMessages left the whole history out, the last reply
		// too (a window ends with it): the request may still not leave
		// the reply's calls unanswered (below), and may not answer them
		// either, as their call does not go upstream. Its first message
		// but a system message (taken out, as the call's) is the one
		// that would answer them.
		i := slices.IndexFunc(pl.params.Messages, func(m InputMessage) bool { return m.Role != RoleSystem })
		if i >= 0 && pl.params.Messages[i].Role == RoleTool {
			return Invalidf("maxHistoryMessages", "maxHistoryMessages 0 leaves out conversation %s's last reply, whose tool calls messages[%d] answers; "+
				"send 1 or more, to send that reply with its results", pl.conv.ID, i)
		}
	}
	for i, m := range pl.params.Messages {
		if m.Role == RoleUser || m.Role == RoleAssistant {
			if err := calls.unanswered(i, pl.conversationID()); err != nil {
				return err
			}
		}
		if !calls.see(i, m.Role, m.ToolCalls, m.ToolCallID) {
			return Invalidf(fmt.Sprintf("messages[%d].toolCallId", i), "messages[%d].toolCallId %q answers no tool call of the assistant message before it; "+
				"a tool message follows the assistant message whose toolCalls has that id (or the conversation's last reply)", i, m.ToolCallID)
		}
		var content string
		if m.DocumentID != "" {
			d, ok := docs[m.DocumentID]
			if !ok {
				if len(docs) == 0 {
					if err := s.checkDocuments(ctx, projectID, i); err != nil {
						return err
					}
				}
				var err error
				d, err = lookup(ctx, PrefixDocument, "document", m.DocumentID, s.deps.Store.GetDocument)
				if KindOf(err) == NotFound || (err == nil && d.ProjectID != projectID) {
					return Invalidf(fmt.Sprintf("messages[%d].documentId", i), "messages[%d].documentId: document %s does not exist in project %s%s",
						i, m.DocumentID, projectID, otherKind("document", PrefixDocument, m.DocumentID))
				}
				if err != nil {
					return Wrap("completions.resolveMessages", err)
				}
				docs[m.DocumentID] = d
			}
			content = d.Content
		} else if m.Content != nil {
			content = *m.Content
		}
		if resolved += len(content) + len(m.Refusal); resolved > maxTurnBytes {
			return Errorf(TooLarge, "messages come to more than %d bytes once their documents are resolved (messages[%d] passes the limit); "+
				"send fewer or smaller documents", maxTurnBytes, i)
		}
		if m.Role == RoleSystem {
			pl.system = content
			continue
		}
		pl.turn = append(pl.turn, Message{Role: m.Role, Content: content, DocumentID: m.DocumentID, Refusal: m.Refusal,
			ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID})
	}
	if err := calls.unanswered(-1, pl.conversationID()); err != nil {
		return err
	}
	return s.resolveDataSources(ctx, pl, projectID, resolved)
}

// resolveDataSources resolves the documents of projectID the request
// names as context, by id (dataSources) and by name (names), in that
// order, each once; resolved is the bytes of the request's messages, which
// the documents' join under maxTurnBytes. As a documentId message, they
// need the right to read the project's documents.
func (s *Completions) resolveDataSources(ctx context.Context, pl *plan, projectID string, resolved int) error {
	p := pl.params
	if len(p.DataSources)+len(p.Names) == 0 {
		return nil
	}
	err := s.access.check(ctx, projectID, PermGetDocument, "project", projectID)
	if KindOf(err) == Forbidden {
		return Errorf(Forbidden, "dataSources and names send documents' content, and your role does not allow %s; leave them out", PermGetDocument)
	}
	if err != nil {
		return err
	}
	add := func(field, id string) error {
		if slices.ContainsFunc(pl.sources, func(d Document) bool { return d.ID == id }) {
			return nil
		}
		d, err := lookup(ctx, PrefixDocument, "document", id, s.deps.Store.GetDocument)
		if KindOf(err) == NotFound || (err == nil && d.ProjectID != projectID) {
			return Invalidf(field, "%s: document %s does not exist in project %s%s", field, id, projectID, otherKind("document", PrefixDocument, id))
		}
		if err != nil {
			return Wrap("completions.resolveDataSources", err)
		}
		if resolved += len(d.Content); resolved > maxTurnBytes {
			e := Errorf(TooLarge, "messages and data sources come to more than %d bytes once their documents are resolved (%s passes the limit); "+
				"send fewer or smaller documents", maxTurnBytes, field)
			e.Details = map[string]any{"field": field}
			return e
		}
		pl.sources = append(pl.sources, *d)
		return nil
	}
	for i, id := range p.DataSources {
		if err := add(fmt.Sprintf("dataSources[%d].id", i), id); err != nil {
			return err
		}
	}
	for i, name := range p.Names {
		field := fmt.Sprintf("names[%d]", i)
		ids, err := s.deps.Store.DocumentIDsNamed(ctx, projectID, name, 2)
		if err != nil {
			return Wrap("completions.resolveDataSources", err)
		}
		switch len(ids) {
		case 0:
			hint := "; names are matched exactly (list-documents, or GET /api/v1/documents?projectId=, lists them)"
			if validID(PrefixDocument, name) {
				hint = "; that is a document id: send it in dataSources"
			}
			return Invalidf(field, "%s: project %s has no document named %q%s", field, projectID, name, hint)
		case 2:
			return Invalidf(field, "%s: project %s has several documents named %q; name the one to send by its id in dataSources", field, projectID, name)
		}
		if err := add(field, ids[0]); err != nil {
			return err
		}
	}
	return nil
}

// contextPreamble opens the documents a request names as context.
const contextPreamble = "The documents below are context for this conversation."

// systemWithSources is the system message that goes upstream: the
// effective one, then the documents the request names as context, each
// in a document element that gives its id and name, escaped as XML
// attributes. A closing tag inside a document's content is broken
// (<\/document), so that no document, which any editor of the project
// may write, can end its element and pose as another.
func (pl *plan) systemWithSources() string {
	if len(pl.sources) == 0 {
		return pl.system
	}
	var b strings.Builder
	if pl.system != "" {
		b.WriteString(pl.system + "\n\n")
	}
	b.WriteString(contextPreamble)
	for _, d := range pl.sources {
		fmt.Fprintf(&b, "\n\n<document id=\"%s\" name=\"%s\">\n%s\n</document>",
			html.EscapeString(d.ID), html.EscapeString(d.Name), closingTag.ReplaceAllString(d.Content, `<\/$1`))
	}
	return b.String()
}

// closingTag finds a document element's closing tag, in any case.
var closingTag = regexp.MustCompile(`(?i)</(document)`)

// conversationID is the id of the conversation the plan continues or
// starts; "" for a stateless completion.
func (pl *plan) conversationID() string {
	if pl.conv == nil {
		return ""
	}
	return pl.conv.ID
}

// upstreamMessages is exactly what goes upstream: the effective system
// message with the documents named as context, the conversation's
// history, then the request's messages.
func (pl *plan) upstreamMessages() []LLMMessage {
	out := make([]LLMMessage, 0, 1+len(pl.window)+len(pl.turn))
	if system := pl.systemWithSources(); system != "" {
		out = append(out, LLMMessage{Role: RoleSystem, Content: system})
	}
	for _, msgs := range [2][]Message{pl.window, pl.turn} {
		for _, m := range msgs {
			out = append(out, LLMMessage{Role: m.Role, Content: m.Content, Refusal: m.Refusal, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID})
		}
	}
	return out
}

// run sends req upstream, streams through emit, stores the
// turn (per chat) before returning, and records usage whatever the
// outcome. The completion's tokens count against the limits that admitted
// it (adm); quotas are what was left of them, which its result, or its
// error, carries (see AdmittedError).
func (s *Completions) run(ctx context.Context, pl *plan, req LLMRequest, p Principal, adm admission, quotas []Quota, emit Emitter) (*Completion, error) {
	meta := CompletionMeta{MessageID: NewID(PrefixMessage), Model: pl.model, Created: s.deps.Now()}
	if pl.conv != nil {
		meta.ConversationID = pl.conv.ID
	}
	rl := &relay{emit: emit, meta: &meta}
	var onDelta func(Delta) error
	if emit != nil {
		onDelta = rl.delta
		if s.deps.MaxStreamDuration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, s.deps.MaxStreamDuration, errStreamTooLong)
			defer cancel()
		}
	}
	called := time.Now()
	res, err := s.callUpstream(ctx, pl, meta, p, req, adm, rl, onDelta)
	if res != nil {
		res.clean()
	}
	if err == nil && emit != nil {
		err = rl.start(res.Model) // an empty reply's stream starts too
	}
	total := time.Since(pl.started)
	debug := pl.debug(req, res, called.Sub(pl.started), total)

	rec := pl.usageRecord(meta, p, res, total, emit != nil)
	if err != nil {
		rec.Outcome = outcomeOf(ctx, err)
	}
	if providerTook(err, rec.Outcome, res, rl.deltas) {
		reply, calls := "", []ToolCall(nil)
		if res != nil {
			reply, calls = res.Content+res.Refusal+res.Reasoning, res.ToolCalls // thinking is billed as output
		}
		rec.Usage = estimateUsage(rec.Usage, err != nil, req.Messages, reply, calls, rl.deltas)
		if res != nil {
			res.Usage = rec.Usage
		}
	}
	s.countTokens(ctx, adm, rec.Usage.TotalTokens)
	if err != nil {
		err = s.endedByServer(ctx, err)
		err = pl.contextAdvice(err)
		s.settleFailed(ctx, pl, meta, res, rec, rl.started)
		return nil, admittedError(err, quotas, debug)
	}

	out := &Completion{CompletionMeta: meta, Content: res.Content, Refusal: res.Refusal, Reasoning: res.Reasoning, ToolCalls: res.ToolCalls,
		FinishReason: res.FinishReason, Usage: res.Usage, Debug: debug, Quotas: quotas}
	if res.Model != "" {
		out.Model = res.Model
	}
	if pl.conv != nil {
		reply := Message{ID: out.MessageID, Role: RoleAssistant, Content: out.Content, Refusal: out.Refusal, ToolCalls: answerable(out),
			Model: out.Model, FinishReason: out.FinishReason, Usage: out.Usage}
		if err := s.storeTurn(ctx, pl, meta, reply); err != nil {
			rec.Outcome = OutcomeNotStored
			s.recordUsage(ctx, pl, rec, false)
			return nil, admittedError(err, quotas, debug)
		}
	}
	s.recordUsage(ctx, pl, rec, true)
	return out, nil
}

// callUpstream is run's call upstream. A panic in it (a fault of an adapter
// or an SDK, which REST and MCP recover as a 500) still records the
// completion's usage, outcome error, and counts its tokens, as a failed
// call's, before it goes on.
func (s *Completions) callUpstream(ctx context.Context, pl *plan, meta CompletionMeta, p Principal, req LLMRequest,
	adm admission, rl *relay, onDelta func(Delta) error) (*LLMResult, error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		rec := pl.usageRecord(meta, p, nil, time.Since(pl.started), onDelta != nil)
		rec.Outcome = OutcomeError
		if providerTook(errPanicked, rec.Outcome, nil, rl.deltas) {
			rec.Usage = estimateUsage(rec.Usage, true, req.Messages, "", nil, rl.deltas)
		}
		s.countTokens(ctx, adm, rec.Usage.TotalTokens)
		s.recordUsage(context.WithoutCancel(ctx), pl, rec, false)
		panic(r)
	}()
	return s.deps.LLM.Complete(ctx, req, onDelta)
}

// callerOf is LLMRequest.Caller for the caller in ctx with the AI
// provider providerID.
func callerOf(ctx context.Context, providerID string) string {
	p, _ := PrincipalFrom(ctx)
	if p.KeyID != "" {
		return providerID + "/" + p.KeyID
	}
	return providerID + "/user:" + p.UserID
}

// errPanicked stands for a call upstream that panicked.
var errPanicked = errors.New("the call upstream panicked")

// request is what run sends the provider at endpoint.
func (pl *plan) request(endpoint Endpoint) LLMRequest {
	return LLMRequest{
		Endpoint: endpoint, Model: pl.model, Messages: pl.upstreamMessages(),
		Temperature: pl.params.Temperature, MaxTokens: pl.params.MaxTokens, TopP: pl.params.TopP, Stop: pl.params.Stop,
		ReasoningEffort: pl.params.ReasoningEffort, Seed: pl.params.Seed, FrequencyPenalty: pl.params.FrequencyPenalty,
		PresencePenalty: pl.params.PresencePenalty, ParallelToolCalls: pl.params.ParallelToolCalls, Thinking: pl.params.Thinking,
		Tools: pl.params.Tools, ToolChoice: pl.params.ToolChoice, ResponseFormat: pl.params.ResponseFormat,
	}
}

// relay passes a streamed completion's deltas to its Emitter, starting
// it (Emitter.Start) before the first, and counts them for
// estimateUsage.
type relay struct {
	emit    Emitter
	meta    *CompletionMeta
	started bool
	deltas  int // received
}

// start starts the stream, once; model, when the provider named one, is
// the one meta announces.
func (r *relay) start(model string) error {
	if r.started {
		return nil
	}
	r.started = true
	if model != "" {
		r.meta.Model = model
	}
	return r.emit.Start(*r.meta)
}

// delta passes d on, cleaned and split as OpenAI's streams send it
// (Delta.split), starting the stream first.
func (r *relay) delta(d Delta) error {
	r.deltas++
	d = d.cleaned()
	if err := r.start(d.Model); err != nil {
		return err
	}
	if len(d.ToolCalls) == 0 {
		return r.emit.Delta(d) // the usual delta, as it is
	}
	for _, part := range d.split() {
		if err := r.emit.Delta(part); err != nil {
			return err
		}
	}
	return nil
}

// usageRecord is the usage of a completion that took total, as the
// provider's result res (nil when the call failed before one) reports it;
// run sets its outcome and completes its tokens.
func (pl *plan) usageRecord(meta CompletionMeta, p Principal, res *LLMResult, total time.Duration, stream bool) UsageRecord {
	rec := UsageRecord{
		ID: meta.MessageID, ProjectID: pl.provider.ProjectID, ConversationID: meta.ConversationID,
		AIProviderID: pl.provider.ID, ProviderType: pl.provider.Type, Model: pl.model, RequestedModel: pl.model,
		UserID: p.UserID, KeyID: p.KeyID, Latency: total, Outcome: OutcomeOK, Stream: stream, CreatedAt: meta.Created,
	}
	if pl.chat != nil {
		rec.ChatID = pl.chat.ID
	}
	if res != nil {
		rec.Usage, rec.TimeToFirst = res.Usage, res.FirstByte
		if res.Model != "" {
			rec.Model = res.Model
		}
	}
	return rec
}

// providerTook says whether the provider had taken a call that ended with
// err and outcome, after deltas deltas: its usage is then counted, and
// estimated where the provider gave none. A reply, and a call that ended
// early (the stream broke, even before its first delta, the client left,
// the server ended it, the first byte was late): its prompt was sent, and
// may be billed. Not a call the provider refused, nor one whose request
// never reached it, whatever ended it (LLMResult.NotTaken).
func providerTook(err error, outcome Outcome, res *LLMResult, deltas int) bool {
	if res != nil && res.NotTaken && deltas == 0 {
		return false
	}
	return err == nil || deltas > 0 || KindOf(err) == Timeout || (res != nil && res.Accepted) ||
		outcome == OutcomeClientDisconnect || outcome == OutcomeInterrupted
}

// settleFailed records the usage of a failed completion, having stored
// its turn if it was a stream the client stopped (see storeStopped).
func (s *Completions) settleFailed(ctx context.Context, pl *plan, meta CompletionMeta, res *LLMResult, rec UsageRecord, started bool) {
	stored := false
	if rec.Outcome == OutcomeClientDisconnect && started && pl.conv != nil {
		err := s.storeStopped(ctx, pl, meta, res, rec.Usage)
		if err != nil {
			s.deps.Logger.WarnContext(ctx, "the turn of a stopped stream was not stored", "conversation", pl.conv.ID, "err", err)
		}
		stored = err == nil
	}
	s.recordUsage(ctx, pl, rec, stored)
}

// recordUsage hands rec to the usage batcher; stored says whether the
// completion's turn was stored. A first turn left unstored created no
// conversation, so rec names none.
func (s *Completions) recordUsage(ctx context.Context, pl *plan, rec UsageRecord, stored bool) {
	if pl.newConv && !stored {
		rec.ConversationID = ""
	}
	s.deps.Usage.Record(ctx, rec)
}

// debug is what a completion shows when its request asked for debug (nil
// when not): res is the provider's result, nil or partial when the call
// failed; queue and total are the times from the request to the call
// upstream and to the reply's end.
func (pl *plan) debug(req LLMRequest, res *LLMResult, queue, total time.Duration) *Debug {
	if !pl.params.Debug {
		return nil
	}
	sent, first := req.Messages, time.Duration(0)
	if res != nil {
		if res.Sent != nil {
			sent = res.Sent
		}
		first = res.FirstByte
	}
	return &Debug{
		ProviderID: pl.provider.ID, ProviderName: pl.provider.Name, ProviderType: pl.provider.Type,
		Model: pl.model, Messages: redactMessages(sent, req.Endpoint.APIKey.Reveal()),
		QueueTime: queue, FirstByte: first, Total: total,
	}
}

// admission is what a completion's limits admitted: the budgets its tokens
// count against, and what was reserved of them (see Limiter.Allow).
type admission struct {
	budgets  []Budget
	reserved Reservation
}

// countTokens counts the tokens a completion used against the limits that
// admitted it, also when its caller has gone.
func (s *Completions) countTokens(ctx context.Context, adm admission, tokens int) {
	if len(adm.budgets) > 0 {
		s.deps.Limiter.AddTokens(context.WithoutCancel(ctx), adm.budgets, tokens, adm.reserved)
	}
}

// reserveFor is what req reserves of its token limits when admitted: its
// prompt's estimated tokens (as a usage record estimates its messages, and
// the tools' and the response format's schemas, which an agent's requests
// may hold many of, as text) and, when the caller set one, its maxTokens,
// which bounds the reply; at most math.MaxInt32, above any limit.
func reserveFor(req LLMRequest) int {
	n := estimateUsage(Usage{}, false, req.Messages, "", nil, 0).PromptTokens
	schemas := 0
	for _, t := range req.Tools {
		schemas += len(t.Name) + len(t.Description) + len(t.Parameters)
	}
	if f := req.ResponseFormat; f != nil {
		schemas += len(f.Name) + len(f.Description) + len(f.Schema)
	}
	n += tokensOf(schemas)
	if req.MaxTokens != nil {
		n += min(*req.MaxTokens, math.MaxInt32)
	}
	return min(n, math.MaxInt32)
}

// admit applies the project's limits to a completion: requests and tokens
// per minute for the project and for the caller's key, and open streams
// for the project and for the key. It returns the budgets to count the
// completion's tokens against with what req reserved of them, what is
// left of each limit that admitted it (see Emitter), and a release for
// the stream slots.
func (s *Completions) admit(ctx context.Context, projectID string, p Principal, req LLMRequest, stream bool) (admission, []Quota, func(), error) {
	none := func() {}
	if s.deps.Limiter == nil {
		return admission{}, nil, none, nil
	}
	l, err := s.limits.lookup(ctx, projectID)
	if err != nil {
		return admission{}, nil, none, err
	}
	// The stream slots first: Allow counts the request, and a request
	// refused for want of a slot runs no completion, so it must count
	// against no budget. A request refused gives the slots it took back,
	// as does one whose admission panicked.
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	admitted := false
	defer func() {
		if !admitted {
			release()
		}
	}()
	var slots []Quota
	if stream {
		for _, sl := range streamSlots(l, p) {
			r, q, err := s.deps.Limiter.Acquire(ctx, sl)
			if err != nil {
				return admission{}, nil, none, err
			}
			releases = append(releases, r)
			if q.Limit > 0 {
				slots = append(slots, q)
			}
		}
	}
	adm := admission{budgets: budgets(l, p)}
	var quotas []Quota
	if len(adm.budgets) > 0 {
		reserve := 0
		if slices.ContainsFunc(adm.budgets, func(b Budget) bool { return b.TokensPerMinute > 0 }) {
			reserve = reserveFor(req) // a pass over the prompt: only where it counts
		}
		if quotas, adm.reserved, err = s.deps.Limiter.Allow(ctx, adm.budgets, reserve); err != nil {
			return admission{}, nil, none, err
		}
		now := time.Now()
		for i := range quotas {
			quotas[i].At = now
		}
	}
	admitted = true
	return adm, append(quotas, slots...), release, nil
}

// storeTurn appends the request's messages and the reply to the
// conversation in one transaction, before the response goes out, so
// that a continuation right after sees them. The messages are stamped with
// the completion's creation, the response's created (so that a replay,
// which reads it back, answers the same).
func (s *Completions) storeTurn(ctx context.Context, pl *plan, meta CompletionMeta, reply Message) error {
	if pl.claim != nil {
		pl.claim.storing.Store(true)
	}
	seq := len(pl.history)
	msgs := make([]Message, 0, len(pl.turn)+1)
	for _, m := range pl.turn {
		m.ID, m.ConversationID, m.Seq, m.CreatedAt = NewID(PrefixMessage), pl.conv.ID, seq, meta.Created
		msgs = append(msgs, m)
		seq++
	}
	reply.ConversationID, reply.Seq, reply.CreatedAt = pl.conv.ID, seq, meta.Created
	reply.RequestKey, reply.RequestHash = pl.requestKey, pl.requestHash
	msgs = append(msgs, reply)
	pl.conv.UpdatedAt = s.deps.Now()
	ctx = context.WithoutCancel(ctx)
	err := s.deps.Store.AppendTurn(ctx, pl.conv, pl.newConv, msgs)
	s.noteTurnWrite(err)
	if KindOf(err) == Conflict {
		if pl.requestKey != "" {
			if _, gerr := s.deps.Store.GetReplyByRequestKey(ctx, pl.requestKey); gerr == nil {
				// Another instance stored a turn for the key first.
				return Errorf(Conflict, "another request with this idempotency key stored its turn at the same time; "+
					"send this request again to get that turn")
			}
		}
		return Errorf(Conflict, "conversation %s was continued by another request at the same time; send this request again", pl.conv.ID)
	}
	return Wrap("completions.storeTurn", err)
}

// answerable is the tool calls of reply c that its stored turn keeps:
// every one, but for a reply cut off midway (finish "length": the token
// limit or the context window; "content_filter": the provider's filter or
// the model's refusal), where the call being written then has arguments
// that stopped short. A call whose arguments are not JSON is dropped then,
// as storeStopped drops a stopped reply's calls: stored, it would
// have to be answered by a tool message before the conversation could go
// on, and an anthropic provider cannot be sent it at all (a call's input
// must be a JSON object). The response still shows it, as the provider
// sent it, with its finish_reason. A finished reply keeps its calls as
// they are, malformed arguments too: the client answers those, and the
// model can try again. A refused reply (Anthropic's model stopped it, and
// said why) keeps none: its turn is never sent to Anthropic again (see
// llm's anthropicMessages), so no result could go with a call of it.
func answerable(c *Completion) []ToolCall {
	if c.Refusal != "" {
		return nil
	}
	if c.FinishReason != "length" && c.FinishReason != "content_filter" {
		return c.ToolCalls
	}
	calls := slices.DeleteFunc(slices.Clone(c.ToolCalls), func(tc ToolCall) bool { return !json.Valid([]byte(tc.Arguments)) })
	if len(calls) == 0 {
		return nil
	}
	return calls
}

// FinishStopped is the finish reason of a stored reply that the client
// stopped: it left, or cancelled the MCP call, while the reply streamed.
const FinishStopped = "client_disconnect"

// storeStopped stores the turn of a stream that the client stopped once
// part of the reply had reached it (a chat's "stop generating"): the
// request's messages, and the reply (or refusal) as far as the provider
// had sent it, with the finish reason FinishStopped. The conversationId of
// the stream's first chunk then names a conversation, and a continuation
// carries on from what the user saw. Its tool calls are dropped, whole or
// cut off: a stopped reply's calls are not run, and a stored call would
// need a tool result before the conversation could go on. A reply left
// with no text is stored empty: the turn keeps its
// reply, as every turn does, and with it an idempotency key, which the
// request sent again then replays rather than running (and storing its
// messages) a second time.
func (s *Completions) storeStopped(ctx context.Context, pl *plan, meta CompletionMeta, res *LLMResult, usage Usage) error {
	reply := Message{ID: meta.MessageID, Role: RoleAssistant, Model: meta.Model, FinishReason: FinishStopped, Usage: usage}
	if res != nil {
		reply.Content, reply.Refusal = res.Content, res.Refusal
		if res.Model != "" {
			reply.Model = res.Model
		}
	}
	return s.storeTurn(ctx, pl, meta, reply)
}

// errStreamTooLong is the cause of a stream's end at MaxStreamDuration.
var errStreamTooLong = errors.New("the stream reached the maximum duration")

// endedByServer says why a completion failed when the server ended it,
// not the client or the provider: the shutdown's grace period ran out, or
// the stream reached MaxStreamDuration. Other errors are returned as they
// are.
func (s *Completions) endedByServer(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case ctx.Err() == nil:
		return err
	case errors.Is(cause, ErrShuttingDown):
		e := Errorf(Unavailable, "the server is shutting down and ended this completion; send the request again")
		e.Err = ErrShuttingDown
		return e
	case errors.Is(cause, errStreamTooLong):
		return Errorf(Timeout, "the stream reached the server's maximum duration of %s; ask for a shorter reply (maxTokens) or split the work", s.deps.MaxStreamDuration)
	case errors.Is(cause, errDeleted):
		return cause
	}
	return err
}

func outcomeOf(ctx context.Context, err error) Outcome {
	switch {
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled):
		// The server ended it (shutdown, maximum stream duration): the
		// cancel cause says why; only a plain cancel is the client leaving.
		return OutcomeInterrupted
	case KindOf(err) == Canceled || errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return OutcomeClientDisconnect
	case errors.Is(err, ErrTruncated):
		return OutcomeTruncated
	case errors.Is(err, ErrUpstreamRefused):
		return OutcomeUpstreamRefused
	case KindOf(err) == Upstream || KindOf(err) == Timeout || KindOf(err) == RateLimited:
		return OutcomeUpstreamError
	default:
		return OutcomeError
	}
}

// storable replaces the NUL characters a model may emit, which
// PostgreSQL cannot store in text, and each byte that is not part of
// valid UTF-8, which PostgreSQL refuses and JSON cannot carry (an upstream
// of a project's own may send any bytes), with U+FFFD, so that what a
// client is sent and what is stored of a reply are the same on either
// database.
func storable(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// storableJSON is storable for a JSON text (a tool call's extra_content),
// whose invalid UTF-8 can only be inside its strings: replaced, it stays
// the same JSON.
func storableJSON(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

// upstreamModel is the model a provider says answered, as Parley takes
// it: storable, and none (so the model asked for stands) when it is
// longer than a model name the API takes. A provider of a project's own
// may answer with any string, and each is stored with the reply and its
// usage, and grouped by in usage reports and metrics.
func upstreamModel(m string) string {
	if utf8.RuneCountInString(m) > maxModelLen {
		return ""
	}
	return storable(m)
}

// cleaned is d as a client is sent it and the reply is stored: without
// NUL, with the model upstreamModel takes.
func (d Delta) cleaned() Delta {
	d.Content, d.Refusal, d.Model = storable(d.Content), storable(d.Refusal), upstreamModel(d.Model)
	d.Reasoning = storable(d.Reasoning)
	if len(d.ToolCalls) > 0 {
		calls := make([]ToolCallDelta, len(d.ToolCalls))
		for i, c := range d.ToolCalls {
			c.ID, c.Name, c.Arguments = storable(c.ID), storable(c.Name), storable(c.Arguments)
			c.ExtraContent = storableJSON(c.ExtraContent)
			calls[i] = c
		}
		d.ToolCalls = calls
	}
	return d
}

// clean makes r what a client is sent and what is stored, as cleaned does
// a delta.
func (r *LLMResult) clean() {
	r.Content, r.Refusal, r.Reasoning = storable(r.Content), storable(r.Refusal), storable(r.Reasoning)
	r.Model, r.FinishReason = upstreamModel(r.Model), storable(r.FinishReason)
	for i := range r.ToolCalls {
		c := &r.ToolCalls[i]
		c.ID, c.Name, c.Arguments = storable(c.ID), storable(c.Name), storable(c.Arguments)
		c.ExtraContent = storableJSON(c.ExtraContent)
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
