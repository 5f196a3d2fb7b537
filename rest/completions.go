package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/slowclient"
	"github.com/parleyhq/parley/internal/wire"
)

// completionFields are the fields both completion endpoints take: those
// MCP's completion tools take too (package wire), stream, and OpenAI's
// spelling of some of them (openai.go). Read them with ToDomain.
type completionFields struct {
	wire.CompletionFields
	// Messages takes the place of CompletionFields.Messages, whose
	// messages do not take OpenAI's spelling.
	Messages []message `json:"messages"`
	// Thinking takes the place of CompletionFields.Thinking, for the
	// spelling of its budget in Anthropic's own API.
	Thinking *thinking `json:"thinking,omitempty"`
	Stream   *bool     `json:"stream,omitempty" desc:"true streams the reply as Server-Sent Events; left out, the request's Accept decides (text/event-stream alone streams)."`
	openAIFields
	sent spellings // set by ToDomain
}

// streams says whether the completion streams: as its stream field says
// or, left out, as the request's Accept does when text/event-stream is
// the only type it names (a client that asks for a stream by its header
// alone, as seed 001's does).
func (f *completionFields) streams(r *http.Request) bool {
	if f.Stream != nil {
		return *f.Stream
	}
	sse := false
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mediaType, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mediaType)) {
			case "text/event-stream":
				sse = true
			case "":
			default:
				return false
			}
		}
	}
	return sse
}

type statelessCompletionRequest struct {
	AIProviderID  string `json:"aiProviderId" jsonschema:"required"`
	SystemMessage string `json:"systemMessage" max:"1048576"`
	completionFields
}

type chatCompletionRequest struct {
	// A pointer, so that "" sent is told from left out: a client whose
	// conversation id is not set yet would start a new conversation
	// without a word.
	ConversationID *string `json:"conversationId"`
	// MaxHistoryMessages sends at most this many of the conversation's
	// latest stored messages upstream (domain.ChatCompletion's).
	MaxHistoryMessages *int `json:"maxHistoryMessages" jsonschema:"minimum=0,maximum=32768" desc:"With conversationId (ignored without, but for its range): send at most this many of the conversation's latest stored messages upstream, less tool results at the start whose call is left out; a history cut before a reply opens with a user message saying earlier messages are left out. 0 sends none. Left out, the whole history goes. The conversation keeps every message."`
	completionFields
}

func (s *Server) handleStatelessCompletion(c *echo.Context) error {
	var req statelessCompletionRequest
	if err := s.bindCompletion(c, &req); err != nil {
		return keepsNoConversation(err)
	}
	params, err := req.ToDomain()
	if err != nil {
		return err
	}
	in := domain.StatelessCompletion{AIProviderID: req.AIProviderID, SystemMessage: req.SystemMessage, CompletionParams: params}
	if !req.streams(c.Request()) {
		out, err := s.svcs.Completions.Stateless(ctx(c), in, nil)
		if err != nil {
			return req.sent.asSent(err)
		}
		setQuotaHeaders(c.Response().Header(), out.Quotas)
		return c.JSON(http.StatusOK, toCompletionResponse(out))
	}
	st, end := s.newStream(c)
	defer end()
	return st.run(func() (*domain.Completion, error) {
		out, err := s.svcs.Completions.Stateless(ctx(c), in, st)
		return out, req.sent.asSent(err)
	})
}

// keepsNoConversation says, of a stateless completion refused for a
// conversationId or sessionId it does not take (seeds 000 and 001
// continue so), where a conversation is continued.
func keepsNoConversation(err error) error {
	if domain.KindOf(err) != domain.Invalid {
		return err
	}
	if f, _ := domain.DetailsOf(err)["field"].(string); f == "conversationId" || f == "sessionId" || f == "maxHistoryMessages" {
		return domain.Invalidf(f, "a stateless completion keeps no conversation, so it takes no %s; to continue one, "+
			"create a chat (POST /api/v1/chats) and send its completions to POST /api/v1/chats/{chatId}/completions, "+
			"with the conversationId of the first", f)
	}
	return err
}

func (s *Server) handleChatCompletion(c *echo.Context) error {
	if c.Param("chatId") == "chat" {
		// An OpenAI SDK given …/api/v1/chats as the stateless base URL.
		return domain.Errorf(domain.NotFound, "no chat has the id chat; for stateless completions at OpenAI's path the base URL is …/api/v1 (POST /api/v1/chat/completions), not …/api/v1/chats")
	}
	var req chatCompletionRequest
	if err := s.bindCompletion(c, &req); err != nil {
		return err
	}
	params, err := req.ToDomain()
	if err != nil {
		return err
	}
	var conversationID string
	if id := req.ConversationID; id != nil {
		if *id == "" {
			return domain.Invalidf("conversationId", "conversationId is empty: leave it out to start a new conversation, "+
				"or send the id (cnv_…) of the one to continue")
		}
		conversationID = *id
	}
	key, err := idempotencyKey(c.Request().Header)
	if err != nil {
		return err
	}
	in := domain.ChatCompletion{ChatID: c.Param("chatId"), ConversationID: conversationID,
		IdempotencyKey: key, MaxHistoryMessages: req.MaxHistoryMessages, CompletionParams: params}
	if !req.streams(c.Request()) {
		out, err := s.svcs.Completions.ForChat(ctx(c), in, nil)
		if err != nil {
			return req.sent.asSent(err)
		}
		setQuotaHeaders(c.Response().Header(), out.Quotas)
		setReplayedHeader(c.Response().Header(), out.CompletionMeta)
		return c.JSON(http.StatusOK, toCompletionResponse(out))
	}
	st, end := s.newStream(c)
	defer end()
	return st.run(func() (*domain.Completion, error) {
		out, err := s.svcs.Completions.ForChat(ctx(c), in, st)
		return out, req.sent.asSent(err)
	})
}

// A per-chat completion sent with an Idempotency-Key is answered, when the
// same request comes again with the key, with the turn stored for it, and
// Idempotent-Replayed: true (see domain.ChatCompletion.IdempotencyKey).
const (
	idempotencyKeyHeader = "Idempotency-Key"
	replayedHeader       = "Idempotent-Replayed"
)

func setReplayedHeader(h http.Header, meta domain.CompletionMeta) {
	if meta.Replayed {
		h.Set(replayedHeader, "true")
	}
}

// completionResponse is OpenAI's chat.completion object plus Parley's ids.
type completionResponse struct {
	ID             string       `json:"id"`
	Object         string       `json:"object" enum:"chat.completion"`
	Created        int64        `json:"created"`
	Model          string       `json:"model"`
	Choices        []choiceJSON `json:"choices"`
	Usage          openAIUsage  `json:"usage"`
	MessageID      string       `json:"messageId"`
	ConversationID string       `json:"conversationId,omitempty"`
	Debug          *wire.Debug  `json:"debug,omitempty" desc:"How the completion was resolved; only when debug was true."`
}

type choiceJSON struct {
	Index        int               `json:"index"`
	Message      choiceMessageJSON `json:"message"`
	FinishReason string            `json:"finish_reason"`
	Logprobs     *struct{}         `json:"logprobs"`
}

// choiceMessageJSON is the reply in a chat.completion: content is null
// when the model only called tools, or declined with a refusal.
type choiceMessageJSON struct {
	Role             string          `json:"role" enum:"assistant"`
	Content          *string         `json:"content" jsonschema:"nullable"`
	Refusal          string          `json:"refusal,omitempty"`
	ReasoningContent string          `json:"reasoning_content,omitempty" desc:"The model's thinking before its reply, where the provider shows it (OpenAI-wire reasoning_content, Anthropic's thinking); not part of content, and not stored with the conversation (Anthropic's thinking before tool calls is, in the first call's extra_content, to be sent back with the calls)."`
	ToolCalls        []wire.ToolCall `json:"tool_calls,omitempty"`
}

type openAIUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// The details OpenAI gives (and clients read for cost): of the
	// prompt, the tokens read from the provider's cache and those written
	// to it; of the reply, the tokens spent reasoning. 0 when the provider
	// reports none.
	PromptTokensDetails     promptTokensDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails completionTokensDetails `json:"completion_tokens_details"`
	// Estimated is true when Parley counted some of the tokens itself,
	// because the provider gave no count (absent otherwise).
	Estimated bool `json:"estimated,omitempty"`
}

type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	// CacheWriteTokens is not OpenAI's (whose caching costs nothing to
	// write) but OpenRouter's name for it, which Anthropic bills above the
	// input price.
	CacheWriteTokens int `json:"cache_write_tokens"`
}

type completionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

func toOpenAIUsage(u domain.Usage) openAIUsage {
	return openAIUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, Estimated: u.Estimated,
		PromptTokensDetails: promptTokensDetails{u.CachedTokens, u.CacheWriteTokens}, CompletionTokensDetails: completionTokensDetails{u.ReasoningTokens}}
}

func toCompletionResponse(c *domain.Completion) completionResponse {
	msg := choiceMessageJSON{Role: "assistant", Refusal: c.Refusal, ReasoningContent: c.Reasoning, ToolCalls: wire.ToolCallsOf(c.ToolCalls)}
	if c.Content != "" || (len(c.ToolCalls) == 0 && c.Refusal == "") {
		msg.Content = &c.Content
	}
	return completionResponse{
		ID: c.MessageID, Object: "chat.completion", Created: c.Created.Unix(), Model: c.Model,
		Choices: []choiceJSON{{Message: msg, FinishReason: c.FinishReason}},
		Usage:   toOpenAIUsage(c.Usage), MessageID: c.MessageID, ConversationID: c.ConversationID, Debug: wire.DebugOf(c.Debug),
	}
}

// chunk is OpenAI's chat.completion.chunk. The first one also carries
// messageId and conversationId (the seed's metadata event); the last one
// before [DONE] carries usage (and debug when asked).
type chunk struct {
	ID             string        `json:"id"`
	Object         string        `json:"object" enum:"chat.completion.chunk"`
	Created        int64         `json:"created"`
	Model          string        `json:"model"`
	Choices        []chunkChoice `json:"choices"`
	Usage          *openAIUsage  `json:"usage,omitempty"`
	MessageID      string        `json:"messageId,omitempty"`
	ConversationID string        `json:"conversationId,omitempty"`
	Debug          *wire.Debug   `json:"debug,omitempty" desc:"How the completion was resolved; only in the last chunk before [DONE], when debug was true."`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	FinishReason *string    `json:"finish_reason"`
}

type chunkDelta struct {
	Role             string          `json:"role,omitempty"`
	Content          *string         `json:"content,omitempty"`
	Refusal          string          `json:"refusal,omitempty"`
	ReasoningContent string          `json:"reasoning_content,omitempty" desc:"A piece of the model's thinking, before the reply's text (see the message's reasoning_content)."`
	ToolCalls        []chunkToolCall `json:"tool_calls,omitempty"`
}

// chunkToolCall is a piece of a tool call: the first of the call at index
// has its id, type and name, later ones more arguments; extra_content
// comes with the piece the provider sent it in.
type chunkToolCall struct {
	Index        int               `json:"index"`
	ID           string            `json:"id,omitempty"`
	Type         string            `json:"type,omitempty"`
	Function     chunkToolFunction `json:"function"`
	ExtraContent wire.RawJSON      `json:"extra_content,omitempty"`
}

type chunkToolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// stream writes a completion as Server-Sent Events. It implements
// domain.Emitter. Headers go out on Start, so errors before the first
// delta still get a normal status and error body; but a provider that
// keeps the stream waiting a whole keep-alive interval before its first
// delta (a reasoning model, a queue) must not leave the client with
// nothing to read, so the first keep-alive opens the stream too, and
// errors after it are error events. Events collect in buf and go out
// together at each flush: Start's chunk with the first delta, and the
// finish reason, usage and [DONE] in one write.
type stream struct {
	s      *Server
	c      *echo.Context
	mu     sync.Mutex
	open   bool           // the headers went out: errors are events from here on
	quotas []domain.Quota // RateLimit-* of the headers, once admitted
	meta   domain.CompletionMeta
	halted bool          // finished: the response is no longer ours
	alive  *time.Timer   // sends the next keep-alive
	wrote  time.Time     // when events last went to the client
	buf    bytes.Buffer  // events not yet written
	enc    *json.Encoder // writes to buf
	// textChunk is the JSON of a text delta's chunk before the text:
	// the same for every chunk of the stream, so it is encoded once.
	textChunk []byte
	// plainHead, when the chunk's id and model are plain (see plain), is
	// how much of textChunk every chunk of one choice without tool calls
	// starts with, up to the delta's opening brace: the first and the
	// finishing chunk are written from it, as the encoder would write them.
	plainHead int

	// A client that keeps its connection but stops reading blocks a write
	// for as long as it likes, and with it the stream: the upstream call
	// (past MaxStreamDuration too), the stream's slot and its usage record.
	// A write that has not gone out after stallAfter, or that is still
	// blocked slowclient.MinStall after the request ends (the shutdown's
	// grace period ran out), is cut by a write deadline: the client is
	// treated as gone.
	rc           *http.ResponseController
	stallAfter   time.Duration
	writeStarted atomic.Int64               // Unix nanoseconds; 0 between writes
	stall        atomic.Pointer[time.Timer] // checkStall's; made by the first write
	ended        atomic.Bool                // checkStall stops
	stopWatch    func() bool                // stops cutting writes when the request ends
}

// stallAfter is how long a write to a client may block before it is cut,
// a stream's or a JSON response's, as over MCP.
func (s *Server) stallAfter() time.Duration { return slowclient.StallAfter(s.cfg.KeepAlive) }

// appendQuote appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it; AppendQuote's error only reports that it did.
func appendQuote(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}

// plain says whether s is written as itself between quotes, by the
// encoder and by appendQuote alike: printable ASCII without '"' or '\\'.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plainEvent begins a data event in st.buf's free space with the chunk's
// JSON up to its delta's members (see plainHead), for the caller to end
// and Write.
func (st *stream) plainEvent() []byte {
	return append(append(st.buf.AvailableBuffer(), "data: "...), st.textChunk[:st.plainHead]...)
}

// textChunkEnd closes a text delta's chunk after its text.
const textChunkEnd = `},"finish_reason":null}]}`

// newStream returns the emitter for a streamed completion, its keep-alives
// running, and the func that stops them.
func (s *Server) newStream(c *echo.Context) (*stream, func()) {
	st := &stream{s: s, c: c, rc: http.NewResponseController(netWriter(c)), stallAfter: s.stallAfter()}
	st.enc = json.NewEncoder(&st.buf)
	st.enc.SetEscapeHTML(false) // as every answer (sendingSerializer)
	st.stopWatch = context.AfterFunc(c.Request().Context(), st.cutIfStillBlocked)
	st.mu.Lock() // keepAlive may run before AfterFunc returns
	st.alive = time.AfterFunc(s.cfg.KeepAlive, st.keepAlive)
	st.mu.Unlock()
	// The handler defers this: it stops the keep-alives, and counts the
	// stream closed, even when finish is never reached (a panic), before
	// the response goes back to the server.
	return st, func() {
		st.stopWatch()
		st.mu.Lock()
		st.halt()
		open := st.open
		st.mu.Unlock()
		if m := s.cfg.Metrics; m != nil && open {
			m.StreamClosed()
		}
	}
}

// cut makes a blocked write to the client fail now, and every write
// after it: the deadline stays.
func (st *stream) cut() { _ = st.rc.SetWriteDeadline(time.Now()) }

// cutIfStillBlocked runs when the request ends (the shutdown's grace
// period ran out, or the client left): a write that is still the same,
// blocked, slowclient.MinStall later is cut, so that the handler can return. Not at
// once: a write under way then is most likely the stream's last one (the
// error event and [DONE] the shutdown sends), and cutting it would take
// them from a client that reads.
func (st *stream) cutIfStillBlocked() {
	started := st.writeStarted.Load()
	if started == 0 {
		return
	}
	time.AfterFunc(slowclient.MinStall, func() {
		if st.writeStarted.Load() == started {
			st.cut()
		}
	})
}

// watched runs f, a write to the client, cutting it if it blocks for
// stallAfter (checkStall); callers hold mu.
func (st *stream) watched(f func() error) error {
	if st.stall.Load() == nil {
		st.stall.Store(time.AfterFunc(st.stallAfter, st.checkStall))
	}
	st.writeStarted.Store(time.Now().UnixNano())
	err := f()
	st.writeStarted.Store(0)
	return err
}

// checkStall runs every stallAfter while the stream lasts, rather than a
// timer set and stopped around each write (each chunk): it cuts a write
// that has been blocked for stallAfter, and otherwise looks again when the
// write in progress, if any, would reach it.
func (st *stream) checkStall() {
	if st.ended.Load() {
		return
	}
	next := st.stallAfter
	if started := st.writeStarted.Load(); started != 0 {
		blocked := time.Since(time.Unix(0, started))
		if blocked >= st.stallAfter {
			st.cut()
			return
		}
		next -= blocked
	}
	st.stall.Load().Reset(next)
}

// halt stops the keep-alives; callers hold mu.
func (st *stream) halt() {
	st.halted = true
	st.alive.Stop()
	st.ended.Store(true)
	if t := st.stall.Load(); t != nil {
		t.Stop()
	}
}

// openLocked sends the stream's headers, once; callers hold mu.
func (st *stream) openLocked() {
	if st.open {
		return
	}
	st.open = true
	h := st.c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	setQuotaHeaders(h, st.quotas)
	st.c.Response().WriteHeader(http.StatusOK)
	if m := st.s.cfg.Metrics; m != nil {
		m.StreamOpened()
	}
}

// Admitted keeps the quotas for the stream's headers, which go out with
// the first delta or keep-alive; admission comes first unless planning it
// outlasted a keep-alive interval, and then the stream went without them.
func (st *stream) Admitted(quotas []domain.Quota) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.quotas = quotas
}

// Start sends the headers, unless a keep-alive did, and the first chunk,
// with Parley's ids. The domain calls Delta or ends the stream right
// after, and that flushes.
func (st *stream) Start(meta domain.CompletionMeta) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.meta = meta
	if !st.open {
		setReplayedHeader(st.c.Response().Header(), meta)
	}
	st.textChunk = fmt.Appendf(nil, `{"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":[{"index":0,"delta":{"content":`,
		appendQuote(nil, meta.MessageID), meta.Created.Unix(), appendQuote(nil, meta.Model))
	st.plainHead = 0
	if plain(meta.MessageID) && plain(meta.Model) {
		st.plainHead = len(st.textChunk) - len(`"content":`)
	}
	st.openLocked()
	if st.plainHead > 0 && plain(meta.ConversationID) {
		b := st.plainEvent()
		b = append(b, `"role":"assistant","content":""},"finish_reason":null}]`...)
		if meta.MessageID != "" {
			b = append(append(append(b, `,"messageId":"`...), meta.MessageID...), '"')
		}
		if meta.ConversationID != "" {
			b = append(append(append(b, `,"conversationId":"`...), meta.ConversationID...), '"')
		}
		b = append(b, "}\n\n"...)
		st.buf.Write(b)
		return nil
	}
	empty := ""
	first := st.chunk()
	first.Choices = []chunkChoice{{Delta: chunkDelta{Role: "assistant", Content: &empty}}}
	first.MessageID, first.ConversationID = meta.MessageID, meta.ConversationID
	return st.add(first)
}

// Delta sends one chunk: text, a refusal's text, tool call pieces, or
// more than one of them; with d.More it keeps it for the next one's write.
func (st *stream) Delta(d domain.Delta) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(d.ToolCalls) == 0 && d.Refusal == "" && d.Reasoning == "" {
		// Most chunks are text: one quoted string between two constants.
		b := st.buf.AvailableBuffer()
		b = append(b, "data: "...)
		b = append(b, st.textChunk...)
		b = appendQuote(b, d.Content)
		b = append(b, textChunkEnd+"\n\n"...)
		st.buf.Write(b)
		return st.flushUnless(d.More)
	}
	ch := st.chunk()
	delta := chunkDelta{Refusal: d.Refusal, ReasoningContent: d.Reasoning}
	if d.Content != "" {
		delta.Content = &d.Content
	}
	for _, tc := range d.ToolCalls {
		c := chunkToolCall{Index: tc.Index, ID: tc.ID, Function: chunkToolFunction{Name: tc.Name, Arguments: tc.Arguments},
			ExtraContent: tc.ExtraContent}
		if tc.ID != "" {
			c.Type = "function"
		}
		delta.ToolCalls = append(delta.ToolCalls, c)
	}
	ch.Choices = []chunkChoice{{Delta: delta}}
	if err := st.add(ch); err != nil {
		return err
	}
	return st.flushUnless(d.More)
}

// flushUnless flushes the pending events unless more follow at once, to
// go in the same write (see domain.Delta). Callers hold mu.
func (st *stream) flushUnless(more bool) error {
	if more {
		return nil
	}
	return st.flush()
}

func (st *stream) chunk() chunk {
	return chunk{ID: st.meta.MessageID, Object: "chat.completion.chunk", Created: st.meta.Created.Unix(), Model: st.meta.Model}
}

// add appends one data event to the events not yet written. Callers hold
// mu.
func (st *stream) add(v any) error {
	n := st.buf.Len()
	st.buf.WriteString("data: ")
	if err := st.enc.Encode(v); err != nil { // Encode ends with \n
		st.buf.Truncate(n)
		return err
	}
	st.buf.WriteString("\n")
	return nil
}

// flush writes the pending events and flushes them to the client. Callers
// hold mu.
func (st *stream) flush() error {
	return st.watched(func() error {
		if err := st.writeNow(); err != nil {
			return err
		}
		if err := st.rc.Flush(); err != nil {
			return domain.Errorf(domain.Canceled, "the client went away")
		}
		return nil
	})
}

// write hands the pending events to the server's buffer without flushing
// it: the last events of a stream leave when the handler returns, in the
// same write as the end of the chunked body, which the client waits for
// anyway. Callers hold mu.
func (st *stream) write() error { return st.watched(st.writeNow) }

// writeNow is write, unwatched. Callers hold mu.
func (st *stream) writeNow() error {
	_, err := st.c.Response().Write(st.buf.Bytes())
	st.buf.Reset()
	st.wrote = time.Now()
	if err != nil {
		return domain.Errorf(domain.Canceled, "the client went away")
	}
	return nil
}

// keepAlive sends an SSE comment once the stream has been quiet for an
// interval, so that proxies and clients do not close a healthy but quiet
// stream, and arms itself for the next; the first one opens the stream if
// no delta did yet. A stream whose events keep coming gets none: the timer
// is moved on to an interval after the last write instead. A timer, not a
// goroutine with a ticker: most streams end before the first keep-alive,
// and a goroutine per stream costs its start.
func (st *stream) keepAlive() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.halted {
		return
	}
	if quiet := time.Since(st.wrote); quiet < st.s.cfg.KeepAlive {
		st.alive.Reset(st.s.cfg.KeepAlive - quiet)
		return
	}
	st.openLocked()
	st.buf.WriteString(": keep-alive\n\n")
	_ = st.flush()
	st.alive.Reset(st.s.cfg.KeepAlive)
}

// run runs complete, a streamed completion, and finishes the stream with
// its outcome. A panic in its course is the internal error recoverPanics
// makes it for any other handler, which a stream that opened ends with
// (an error event and [DONE]) rather than stopping short, as if whole.
func (st *stream) run(complete func() (*domain.Completion, error)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = st.finish(nil, st.s.recovered(st.c, r))
		}
	}()
	return st.finish(complete())
}

// finish ends the stream: the finish reason, then usage (and debug), then
// [DONE]; or, for an error after the stream opened, an error event and
// [DONE]. An error before the stream opened is returned for the normal
// error response.
func (st *stream) finish(out *domain.Completion, err error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.halt()
	if !st.open {
		return err
	}
	if err != nil {
		if domain.KindOf(err) == domain.Canceled {
			return nil // the client left; nobody reads an error
		}
		msg := "stream failed"
		if errors.Is(err, domain.ErrShuttingDown) {
			msg = "request ended by shutdown" // as a JSON completion's (handleError)
		}
		st.s.log.Log(ctx(st.c), domain.LogLevel(err), msg, "kind", domain.KindOf(err).String(), "err", err)
		_ = st.add(toErrorBody(err))
		st.buf.WriteString(doneEvent)
		_ = st.write()
		return nil
	}
	reason := out.FinishReason
	var lastErr error
	if st.plainHead > 0 && plain(reason) {
		b := append(append(append(st.plainEvent(), `},"finish_reason":"`...), reason...), `"}]}`+"\n\n"...)
		st.buf.Write(b)
	} else {
		last := st.chunk()
		last.Choices = []chunkChoice{{Delta: chunkDelta{}, FinishReason: &reason}}
		lastErr = st.add(last)
	}
	usage := st.chunk()
	usage.Choices = []chunkChoice{}
	u := toOpenAIUsage(out.Usage)
	usage.Usage, usage.Debug = &u, wire.DebugOf(out.Debug)
	if lastErr == nil && st.add(usage) == nil {
		st.buf.WriteString(doneEvent)
	}
	_ = st.write()
	return nil
}

// doneEvent ends every stream, as OpenAI's do.
const doneEvent = "data: [DONE]\n\n"

var _ domain.Emitter = (*stream)(nil)

// idempotencyKey reads a per-chat completion's Idempotency-Key: none when
// the header is left out. Sent empty, or more than once, it is refused
// rather than run as a request without a key, which a retry would run again.
func idempotencyKey(h http.Header) (string, error) {
	switch v := h.Values(idempotencyKeyHeader); {
	case len(v) == 0:
		return "", nil
	case len(v) > 1:
		return "", domain.Invalidf("idempotencyKey", "send one Idempotency-Key header; this request has %d", len(v))
	case v[0] == "":
		return "", domain.Invalidf("idempotencyKey", "the Idempotency-Key header is empty; send a key of 1 to 255 visible ASCII characters, such as a UUID, or leave the header out")
	default:
		return v[0], nil
	}
}
