// Package llmtest is a fake AI provider for tests: a real HTTP server on
// 127.0.0.1 that speaks the OpenAI chat completions wire protocol (plain
// JSON and SSE, also at Azure's deployment paths) and the Anthropic
// Messages API (JSON and its SSE event sequence).
//
// By default it echoes: the reply is "echo: " plus the last user message,
// streamed one word per delta, with usage computed so a test can predict
// it (see PromptTokens and Deltas). Every request is recorded for
// assertions. A request the provider would refuse as sent gets its 400
// (Anthropic: a text block that is empty or only whitespace, a
// cache_control it does not know, a tool call sent back without the
// thinking before it while thinking is on). An Anthropic request with a top-level
// cache_control plays its automatic prompt caching (see promptCache). Behaviors
// (status codes, delays, cut or reset streams, oversized lines and
// events, keep-alive comments, hangs) can be scripted per request.
// It lists models at GET .../models in both protocols (see SetModels),
// Anthropic's in pages.
//
//	s := llmtest.NewServer(t)
//	s.Enqueue(llmtest.Behavior{Status: 500}) // the first call fails, the next echoes
//	... point an openai provider at s.URL(), call it ...
//	if got := s.Last().Messages; ...
package llmtest

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Protocol names the wire protocol a request used.
type Protocol string

const (
	OpenAI    Protocol = "openai"    // /chat/completions, including Azure's deployment paths
	Anthropic Protocol = "anthropic" // /v1/messages
)

// Request is one request the server received.
type Request struct {
	N        int // position among the server's requests, from 0
	Protocol Protocol
	Method   string
	Path     string
	Query    url.Values
	Header   http.Header
	RawBody  []byte
	Body     map[string]any // the decoded JSON body; numbers are float64

	// Decoded for convenience.
	APIKey     string    // from Authorization: Bearer, api-key (Azure) or x-api-key (Anthropic)
	Model      string    // body "model", else the Azure deployment
	Deployment string    // Azure: the {d} of /openai/deployments/{d}/chat/completions
	Stream     bool      // body "stream"
	ListModels bool      // a GET of .../models; Protocol Anthropic when it had an anthropic-version header
	Messages   []Message // in order; Anthropic's system parameter comes first as role "system"
}

// Message is one message of a recorded request.
type Message struct {
	Role    string
	Content string // the text; tool results' text is not part of it
	// ToolCalls are OpenAI's tool_calls, or Anthropic's tool_use blocks
	// (Arguments is then the JSON of input).
	ToolCalls []ToolCall
	// ToolCallID is an OpenAI tool message's tool_call_id.
	ToolCallID string
	// Refusal is an OpenAI assistant message's refusal.
	Refusal string
	// ToolResults are the tool_result blocks of an Anthropic user message.
	ToolResults []ToolResult
}

// ToolCall is a tool call: one a Behavior answers with, or one a recorded
// message carries.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // JSON text
	// Extra is the JSON object of OpenAI-wire extra_content, "" for none:
	// a reply's call carries it (streamed, in its first piece) as Gemini
	// carries its thought signature; a recorded call, as it came back.
	Extra string
}

// ToolResult is a tool_result block of an Anthropic message.
type ToolResult struct {
	ToolCallID string // tool_use_id
	Content    string // its text
}

// Fault is a failure the server plays instead of a normal reply.
type Fault int

const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultTruncate ends the stream cleanly after AfterDeltas deltas,
	// with no finish reason and no [DONE] (Anthropic: no message_delta
	// or message_stop). A non-stream reply is cut half-way.
	FaultTruncate
	// FaultReset resets the connection (TCP RST) after AfterDeltas
	// deltas; a non-stream request gets no answer at all.
	FaultReset
	// FaultDrop resets the connection before any response is written.
	FaultDrop
	// FaultOversizedLine sends, after AfterDeltas deltas, one stream line
	// of Size bytes; a non-stream reply's content is padded to Size bytes.
	FaultOversizedLine
	// FaultHang stops after AfterDeltas deltas (non-stream: before
	// answering) and waits until the client goes away.
	FaultHang
	// FaultStreamError sends an in-band error event after AfterDeltas
	// deltas: OpenAI's data: {"error": ...}, Anthropic's event: error. A
	// non-stream request gets a 200 whose body is an error object.
	FaultStreamError
	// FaultUnendedEvent sends, after AfterDeltas deltas, one event that
	// never ends: Size bytes of data lines of UnendedEventLine bytes each
	// (OpenAI: chunks with no choices; Anthropic: an event: ping line, then
	// ping data lines), with no blank line between them. Then it ends the
	// event and the stream, with no finish reason. A client that stops
	// reading is seen abandoning the request. A non-stream request is
	// answered normally.
	FaultUnendedEvent
	// FaultErrorChunk reports an error in band as OpenRouter does once a
	// stream began: after AfterDeltas deltas, a chunk with a top-level
	// error object beside a choice whose finish_reason is "error", then
	// [DONE]. Anthropic streams and non-stream requests play
	// FaultStreamError.
	FaultErrorChunk
	// FaultNoData sends a stream's headers and its Comments, then no event
	// at all (not even OpenAI's role chunk or Anthropic's message_start)
	// and waits until the client goes away, as a provider stuck before its
	// reply behind an aggregator's keep-alives. A non-stream request plays
	// FaultHang.
	FaultNoData
	// FaultResetBeforeData sends a stream's headers and its Comments, then
	// resets the connection (TCP RST) before any event. A non-stream
	// request plays FaultReset.
	FaultResetBeforeData
	// FaultStallBody sends the response's headers and the first half of
	// its body (a whole reply, Body, or the error body of Status), then
	// waits until the client goes away, as an upstream whose connection
	// stalls mid-body. A stream plays FaultHang.
	FaultStallBody
	// FaultTrickleBody sends a whole reply's body a byte every ChunkDelay,
	// as an upstream that is never quite quiet and never done.
	FaultTrickleBody
)

// UnendedEventLine is the size of each data line of FaultUnendedEvent,
// its newline included.
const UnendedEventLine = 2 << 10

// Behavior is how the server answers one request. The zero value echoes.
type Behavior struct {
	// Status, when 4xx or 5xx, answers with this status and Body, or with
	// an error body in the request's protocol when Body is empty.
	Status int
	// Body, when set, is sent as is (with Status, default 200).
	Body string
	// Header is added to the response.
	Header http.Header
	// Delay is waited before the response headers.
	Delay time.Duration
	// ChunkDelay is waited before each stream event.
	ChunkDelay time.Duration
	// Reply replaces the echoed text; Deltas replaces its split into deltas.
	Reply  string
	Deltas []string
	// Refusal makes an OpenAI-wire reply decline, as OpenAI's models do
	// with structured outputs: the message's refusal, with content null
	// (there is no text unless Reply or Deltas sets it); streamed, refusal
	// deltas of a word each. Anthropic replies, with FinishReason
	// "refusal", carry it as stop_details' explanation (null when empty).
	Refusal string
	// FinishReason replaces "stop" (OpenAI) or "end_turn" (Anthropic).
	FinishReason string
	// Model replaces the model echoed from the request.
	Model string
	// ToolCalls makes the reply call these tools, after the text (there is
	// none unless Reply or Deltas sets it), with finish reason tool_calls
	// (Anthropic: stop_reason tool_use). Streamed, each call is a delta
	// with its id and name and then its arguments in pieces of ArgPiece
	// runes (OpenAI's tool_calls deltas; Anthropic's tool_use
	// content_block_start and input_json_delta events).
	ToolCalls []ToolCall
	// ArgPiece is the size of the streamed pieces of tool call arguments
	// (default 8).
	ArgPiece int
	// ToolIndexZero streams every OpenAI-wire tool call with index 0, as
	// Ollama does for calls made together: each call's first piece has its
	// own id.
	ToolIndexZero bool
	// ToolCallsInOneChunk streams an OpenAI-wire reply's tool calls whole,
	// all in one chunk, as Ollama does.
	ToolCallsInOneChunk bool
	// Reasoning is the model's thinking, sent before the text in each
	// protocol's shape for it: OpenAI-wire as reasoning_content (DeepSeek,
	// vLLM), streamed a word per chunk, or as a thinking part with
	// ContentParts; Anthropic as a thinking block (thinking_delta pieces,
	// then a signature_delta).
	Reasoning string
	// ReasoningBack refuses, as DeepSeek's thinking mode does, an
	// OpenAI-wire request with an assistant message that called tools
	// and came without its reasoning_content.
	ReasoningBack bool
	// ReasoningNamed sends an OpenAI-wire reply's reasoning as reasoning,
	// as OpenRouter, Ollama and vLLM since 0.11 name it, rather than
	// reasoning_content.
	ReasoningNamed bool
	// ThoughtSignature makes an OpenAI-wire reply that calls tools carry
	// reasoning_details as OpenRouter gives Gemini's: the reasoning as a
	// reasoning.text detail (index 0; streamed a piece per reasoning
	// chunk), and this as the data of a reasoning.encrypted detail
	// (index 1) whose id is the first call's, streamed with that call's
	// first piece. DetailsBack refuses, as OpenRouter does for Gemini, a
	// request whose assistant message called tools without them (an
	// encrypted detail naming one of its calls), or with pieces of a
	// detail not joined (two in a row of the same type and index).
	ThoughtSignature string
	DetailsBack      bool
	// NineCharIDs refuses, as Mistral's API does, an OpenAI-wire request
	// with a tool call id (a call's, or a tool message's tool_call_id)
	// that is not nine letters and digits.
	NineCharIDs bool
	// RedactedThinking, Anthropic only, is the data of a redacted_thinking
	// block sent after the thinking block (thinking the API encrypts).
	RedactedThinking string
	// ContentParts sends OpenAI-wire content as a list of typed parts, as
	// Mistral's reasoning models do, rather than a string: the reasoning
	// as {"type": "thinking", "thinking": [{"type": "text", ...}]}, the
	// text as {"type": "text", "text": ...} (streamed, one part per delta).
	ContentParts bool
	// NoStreamOptions plays an OpenAI-wire server that does not know
	// stream_options, as Mistral's API: a request that has it gets a 422
	// naming it (Pydantic's extra_forbidden), and a stream sends its usage
	// unasked.
	NoStreamOptions bool
	// Usage replaces the computed usage.
	Usage *Usage
	// Comments is how many SSE comments (": keep-alive" and a blank line,
	// as aggregators send while a model thinks) a stream sends before its
	// first event.
	Comments int
	// Fault, AfterDeltas and Size play a failure; see Fault.
	Fault       Fault
	AfterDeltas int
	Size        int // FaultOversizedLine (default 2 MiB) and FaultUnendedEvent (default 8 MiB)
}

// Usage is the token usage the server reports. CachedTokens, of the
// prompt's, go out as OpenAI's prompt_tokens_details.cached_tokens and
// Anthropic's cache_read_input_tokens, CacheWriteTokens (Anthropic only)
// as its cache_creation_input_tokens, and its input_tokens are the rest;
// ReasoningTokens, of the reply's, as OpenAI's
// completion_tokens_details.reasoning_tokens. Without them, no details.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int
	CacheWriteTokens int
	ReasoningTokens  int
}

// anthropic is u as Anthropic reports it, with output as its
// output_tokens (and its reasoning tokens as thinking_tokens).
func (u Usage) anthropic(output int) map[string]any {
	m := map[string]any{"input_tokens": u.PromptTokens - u.CachedTokens - u.CacheWriteTokens, "output_tokens": output}
	if u.CachedTokens > 0 {
		m["cache_read_input_tokens"] = u.CachedTokens
	}
	if u.CacheWriteTokens > 0 {
		m["cache_creation_input_tokens"] = u.CacheWriteTokens
	}
	if d := u.anthropicOutputDetails(); d != nil {
		m["output_tokens_details"] = d
	}
	return m
}

// anthropicOutputDetails is Anthropic's output_tokens_details of u: its
// reasoning tokens as thinking_tokens (nil when there are none).
func (u Usage) anthropicOutputDetails() map[string]any {
	if u.ReasoningTokens == 0 {
		return nil
	}
	return map[string]any{"thinking_tokens": u.ReasoningTokens}
}

// Server is the fake upstream. Its methods are safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	done chan struct{}

	mu         sync.Mutex
	requests   []Request
	queue      []Behavior
	script     func(n int, r Request) Behavior
	requireKey string
	forget     bool
	n          int // requests received
	canceled   int
	canceledN  map[int]bool    // the numbers of the requests seen abandoned
	cancelSeen chan struct{}   // closed, and replaced, at each abandonment
	cached     map[string]bool // the prompt prefixes cached (promptCache)
	models     []string        // listed at GET .../models
	modelsPage int             // Anthropic's most per page, 0 for as asked
	closeOnce  sync.Once
}

// NewServer starts a fake upstream on 127.0.0.1, closed when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake upstream on 127.0.0.1 outside a test (the load
// generator runs one as its own process); the caller closes it.
func Start() *Server {
	s := &Server{done: make(chan struct{}), canceledN: map[int]bool{}, cancelSeen: make(chan struct{}), cached: map[string]bool{},
		models: DefaultModels}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// DefaultModels are the models a server lists until SetModels.
var DefaultModels = []string{"fake-small", "fake-large"}

// SetModels sets the models the server lists, in order, and the most an
// Anthropic list request gets per page (0: its limit, default 20, as
// Anthropic's); OpenAI's list is never paged. A model's created time is
// 2024-01-01 plus its position in days, its OpenAI owned_by "llmtest".
func (s *Server) SetModels(page int, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models, s.modelsPage = ids, page
}

// Forget stops the server from keeping the requests it receives, so that
// a long load test does not grow it; Requests and Last then report nothing
// new, nor does WaitCanceledN, while Count, Canceled and the numbering N
// still count every request.
func (s *Server) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget = true
}

// URL is the OpenAI-style base URL, with /v1: what an openai-compatible
// provider's baseUrl is set to. The Anthropic client accepts it too, and
// Azure's paths are answered under it.
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// RootURL is the server's address without a path.
func (s *Server) RootURL() string { return s.srv.URL }

// Close stops the server, ending requests that still hang.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns how many requests were received.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Last returns the last request received, or the zero Request.
func (s *Server) Last() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}
	}
	return s.requests[len(s.requests)-1]
}

// Enqueue queues behaviors for the next requests, one each. Queued
// behaviors come before the Script; with neither, the server echoes.
func (s *Server) Enqueue(bs ...Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, bs...)
}

// Script decides the behavior of every request the queue does not; n
// counts requests from 0. A nil f restores the echo.
func (s *Server) Script(f func(n int, r Request) Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = f
}

// RequireKey makes the server answer 401 to requests that do not carry
// key (as a bearer token, api-key or x-api-key); "" accepts any.
func (s *Server) RequireKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireKey = key
}

// Canceled returns how many requests the server saw the client abandon
// while it was still answering.
func (s *Server) Canceled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

// WaitCanceledN waits up to d for the server to see the client abandon
// request number n (Request.N, counted from 0), and reports whether it did.
// It consumes nothing: it answers true for as long as request n was
// abandoned, and never for another request's abandonment.
func (s *Server) WaitCanceledN(n int, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		seen, next := s.canceledN[n], s.cancelSeen
		s.mu.Unlock()
		if seen {
			return true
		}
		select {
		case <-next:
		case <-t.C:
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.canceledN[n]
		}
	}
}

// exchange is one request being answered.
type exchange struct {
	s        *Server
	w        http.ResponseWriter
	r        *http.Request
	req      Request
	b        Behavior
	canceled bool
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	req := Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), RawBody: raw,
		APIKey: apiKey(r.Header),
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		req.Protocol = OpenAI
		if rest, ok := strings.CutSuffix(r.URL.Path, "/chat/completions"); ok {
			if i := strings.Index(rest, "/openai/deployments/"); i >= 0 {
				req.Deployment = rest[i+len("/openai/deployments/"):]
			}
		}
	case strings.HasSuffix(r.URL.Path, "/messages"):
		req.Protocol = Anthropic
	case strings.HasSuffix(r.URL.Path, "/models"):
		req.Protocol, req.ListModels = OpenAI, true
		if r.Header.Get("anthropic-version") != "" {
			req.Protocol = Anthropic
		}
	}
	_ = json.Unmarshal(raw, &req.Body)
	decode(&req)

	s.mu.Lock()
	req.N = s.n
	s.n++
	if !s.forget {
		s.requests = append(s.requests, req)
	}
	var b Behavior
	switch {
	case len(s.queue) > 0:
		b, s.queue = s.queue[0], s.queue[1:]
	case s.script != nil:
		b = s.script(req.N, req)
	}
	requireKey := s.requireKey
	s.mu.Unlock()

	x := &exchange{s: s, w: w, r: r, req: req, b: b}
	switch {
	case req.Protocol == "":
		x.writeError(http.StatusNotFound, "no such endpoint "+r.URL.Path+"; the fake serves .../chat/completions, .../messages and .../models")
		return
	case req.ListModels && r.Method != http.MethodGet:
		x.writeError(http.StatusMethodNotAllowed, "use GET")
		return
	case !req.ListModels && r.Method != http.MethodPost:
		x.writeError(http.StatusMethodNotAllowed, "use POST")
		return
	case requireKey != "" && req.APIKey != requireKey:
		x.writeError(http.StatusUnauthorized, "invalid x-api-key")
		return
	}
	if msg := x.refusal(); msg != "" {
		x.writeError(http.StatusBadRequest, msg)
		return
	}
	if x.noStreamOptions() {
		return
	}
	if b.Fault == FaultDrop {
		x.reset()
		return
	}
	if !x.wait(b.Delay) {
		return
	}
	for k, vs := range b.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	switch {
	case b.Body != "":
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		status := b.Status
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		x.writeBody([]byte(b.Body))
		return
	case b.Status >= 400:
		x.writeError(b.Status, defaultErrorMessage(b.Status))
		return
	}

	if req.ListModels {
		x.listModels()
		return
	}
	reply := x.reply()
	if b.Usage == nil {
		reply.usage = s.promptCache(req, reply.usage)
	}
	switch {
	case req.Protocol == OpenAI && req.Stream:
		x.openAIStream(reply)
	case req.Protocol == OpenAI:
		x.openAIJSON(reply)
	case req.Stream:
		x.anthropicStream(reply)
	default:
		x.anthropicJSON(reply)
	}
}

// listModels answers a model list request with the server's models, in
// the request's protocol: OpenAI's whole, Anthropic's a page of them from
// after_id on, limit long (default 20) or shorter (SetModels).
func (x *exchange) listModels() {
	x.s.mu.Lock()
	ids, page := x.s.models, x.s.modelsPage
	x.s.mu.Unlock()
	created := func(i int) time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i) }
	var body any
	if x.req.Protocol == OpenAI {
		data := make([]map[string]any, len(ids))
		for i, id := range ids {
			data[i] = map[string]any{"id": id, "object": "model", "created": created(i).Unix(), "owned_by": "llmtest"}
		}
		body = map[string]any{"object": "list", "data": data}
	} else {
		from := 0
		if after := x.req.Query.Get("after_id"); after != "" {
			from = slices.Index(ids, after) + 1
		}
		n := 20
		if limit, err := strconv.Atoi(x.req.Query.Get("limit")); err == nil && limit > 0 {
			n = limit
		}
		if page > 0 {
			n = min(n, page)
		}
		to := min(from+n, len(ids))
		data := []map[string]any{}
		for i := from; i < to; i++ {
			data = append(data, map[string]any{"type": "model", "id": ids[i], "display_name": ids[i], "created_at": created(i).Format(time.RFC3339)})
		}
		m := map[string]any{"data": data, "has_more": to < len(ids), "first_id": nil, "last_id": nil}
		if len(data) > 0 {
			m["first_id"], m["last_id"] = ids[from], ids[to-1]
		}
		body = m
	}
	js, _ := json.Marshal(body)
	x.w.Header().Set("Content-Type", "application/json")
	x.writeBody(js)
}

// refusal is the 400 message with which the provider would refuse the
// request as sent, "" when it takes it.
func (x *exchange) refusal() string {
	if x.req.Protocol == Anthropic {
		return cmp.Or(anthropicTextRefusal(x.req.Body), anthropicToolsRefusal(x.req.Body), cacheControlRefusal(x.req.Body), thinkingRefusal(x.req.Body))
	}
	if x.b.ReasoningBack {
		return reasoningBackRefusal(x.req.Body)
	}
	if x.b.DetailsBack {
		return detailsBackRefusal(x.req.Body)
	}
	if x.b.NineCharIDs {
		return nineCharIDsRefusal(x.req.Body)
	}
	return ""
}

// promptCache plays Anthropic's prompt caching for req, an Anthropic
// request with a top-level cache_control (automatic caching: a breakpoint
// after its last message) and perhaps one on its last system block (a
// breakpoint after its system prompt). From each breakpoint Anthropic
// looks back for the longest prefix an earlier request to the same model
// with the same tools cached (over 20 blocks; here messages, the system
// first) and reads it from the cache; the rest of the prompt is written
// to it, and it is cached at each breakpoint for the requests that
// follow. u is the usage without caching; it comes back with
// CachedTokens and CacheWriteTokens set. Anthropic caches only prompts of
// a thousand tokens and more, and for a while; the fake caches any, for
// good.
func (s *Server) promptCache(req Request, u Usage) Usage {
	if _, ok := req.Body["cache_control"]; !ok || req.Protocol != Anthropic {
		return u
	}
	const lookback = 20
	// keys[n] names the prompt of the first n messages: a hash chained
	// over them, after the model and the tools, which come before the
	// messages in Anthropic's prompt.
	keys := make([]string, len(req.Messages)+1)
	head, _ := json.Marshal([]any{req.Model, req.Body["tools"], req.Body["tool_choice"]})
	sum := sha256.Sum256(head)
	keys[0] = string(sum[:])
	contents := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		b, _ := json.Marshal(m)
		sum = sha256.Sum256(append([]byte(keys[i]), b...))
		keys[i+1], contents[i] = string(sum[:]), m.Content
	}
	breakpoints := []int{len(req.Messages)}
	if sys := blocks(req.Body["system"]); len(sys) > 0 && sys[len(sys)-1]["cache_control"] != nil {
		breakpoints = append(breakpoints, 1) // req.Messages[0] is the system prompt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	read := 0
	for _, at := range breakpoints {
		for n := at; n > read && n >= at-lookback; n-- {
			if s.cached[keys[n]] {
				read = n
				break
			}
		}
	}
	if read > 0 {
		u.CachedTokens = min(PromptTokens(contents[:read]...), u.PromptTokens)
	}
	u.CacheWriteTokens = u.PromptTokens - u.CachedTokens
	for _, at := range breakpoints {
		s.cached[keys[at]] = true
	}
	return u
}

// noStreamOptions answers a request with stream_options as Mistral's API
// does, when the behavior plays such a server; it reports whether it did.
func (x *exchange) noStreamOptions() bool {
	if _, ok := x.req.Body["stream_options"]; !ok || !x.b.NoStreamOptions || x.req.Protocol != OpenAI {
		return false
	}
	x.w.Header().Set("Content-Type", "application/json")
	x.w.WriteHeader(http.StatusUnprocessableEntity)
	_, _ = io.WriteString(x.w, `{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options","include_usage"],`+
		`"msg":"Extra inputs are not permitted","input":true}]},"type":"invalid_request_error","param":null,"code":null}`)
	return true
}

// reply is what the server answers with: the text split in deltas, the
// finish reason and the usage.
type reply struct {
	deltas       []string
	toolCalls    []ToolCall
	argPiece     int
	finishReason string // "" for the protocol's normal stop
	usage        Usage
	model        string
	reasoning    string
	redacted     string
	// reasoningNamed: see Behavior.ReasoningNamed
	reasoningNamed bool
	signature      string // Behavior.ThoughtSignature
	// hideThinking: the request asked Anthropic's thinking display
	// "omitted", so its thinking blocks come signed but without text.
	hideThinking bool
	refusal      string
	contentParts bool
}

func (r reply) text() string { return strings.Join(r.deltas, "") }

// reasoningPieces splits the reasoning into the pieces streamed, a word
// each; none when there is no reasoning.
func (r reply) reasoningPieces() []string {
	if r.reasoning == "" {
		return nil
	}
	return Deltas(r.reasoning)
}

// refusalPieces splits the refusal into the pieces streamed, a word each;
// none when there is no refusal.
func (r reply) refusalPieces() []string {
	if r.refusal == "" {
		return nil
	}
	return Deltas(r.refusal)
}

// pieces splits a tool call's arguments into the pieces streamed.
func (r reply) pieces(args string) []string {
	var out []string
	runes := []rune(args)
	for len(runes) > 0 {
		n := min(r.argPiece, len(runes))
		out = append(out, string(runes[:n]))
		runes = runes[n:]
	}
	return out
}

func (x *exchange) reply() reply {
	b, req := x.b, x.req
	var out reply
	switch {
	case b.Deltas != nil:
		out.deltas = b.Deltas
	case b.Reply != "":
		out.deltas = Deltas(b.Reply)
	case len(b.ToolCalls) > 0 || b.Refusal != "":
	default:
		out.deltas = Deltas(EchoReply(lastUser(req.Messages)))
	}
	out.toolCalls, out.argPiece = b.ToolCalls, b.ArgPiece
	if out.argPiece <= 0 {
		out.argPiece = 8
	}
	if len(out.toolCalls) > 0 {
		out.finishReason = "tool_calls"
	}
	if limit := maxTokens(req.Body); limit > 0 && len(out.deltas) > limit {
		out.deltas = out.deltas[:limit]
		out.finishReason = "length"
	}
	if b.FinishReason != "" {
		out.finishReason = b.FinishReason
	}
	contents := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		contents[i] = m.Content
	}
	out.refusal = b.Refusal
	out.usage = Usage{PromptTokens: PromptTokens(contents...), CompletionTokens: len(out.deltas) + len(out.refusalPieces()) + len(out.toolCalls)}
	if b.Usage != nil {
		out.usage = *b.Usage
	}
	out.reasoning, out.contentParts, out.redacted, out.reasoningNamed = b.Reasoning, b.ContentParts, b.RedactedThinking, b.ReasoningNamed
	out.signature = b.ThoughtSignature
	if t, _ := req.Body["thinking"].(map[string]any); t["display"] == "omitted" {
		out.hideThinking = true
	}
	out.model = req.Model
	if b.Model != "" {
		out.model = b.Model
	}
	if out.model == "" {
		out.model = "fake-model"
	}
	return out
}

// EchoReply is the default reply to a request whose last user message is
// content.
func EchoReply(content string) string { return "echo: " + content }

// Deltas splits a reply into the deltas the server streams: one per word,
// each keeping its trailing space ("echo: hi there" → "echo: ", "hi ",
// "there"). The default completion_tokens is their number.
func Deltas(reply string) []string {
	var out []string
	for _, d := range strings.SplitAfter(reply, " ") {
		if d != "" {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// PromptTokens is the default prompt_tokens for a request whose messages
// (Anthropic: and system) have these contents: their characters / 4 + 1.
func PromptTokens(contents ...string) int {
	n := 0
	for _, c := range contents {
		n += utf8.RuneCountInString(c)
	}
	return n/4 + 1
}

func lastUser(ms []Message) string {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Role == "user" {
			return ms[i].Content
		}
	}
	return ""
}

func maxTokens(body map[string]any) int {
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		if v, ok := body[k].(float64); ok && v > 0 {
			return int(v)
		}
	}
	return 0
}

func apiKey(h http.Header) string {
	if v, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer "); ok {
		return v
	}
	if v := h.Get("Api-Key"); v != "" {
		return v
	}
	return h.Get("X-Api-Key")
}

// decode fills the convenience fields of req from its body.
func decode(req *Request) {
	body := req.Body
	req.Model, _ = body["model"].(string)
	if req.Model == "" {
		req.Model = req.Deployment
	}
	req.Stream, _ = body["stream"].(bool)
	if req.Protocol == Anthropic {
		if sys := text(body["system"]); sys != "" {
			req.Messages = append(req.Messages, Message{Role: "system", Content: sys})
		}
	}
	msgs, _ := body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		msg := Message{Content: text(mm["content"])}
		msg.Role, _ = mm["role"].(string)
		msg.ToolCallID, _ = mm["tool_call_id"].(string)
		msg.Refusal, _ = mm["refusal"].(string)
		calls, _ := mm["tool_calls"].([]any)
		for _, c := range calls {
			cm, _ := c.(map[string]any)
			fn, _ := cm["function"].(map[string]any)
			var tc ToolCall
			tc.ID, _ = cm["id"].(string)
			tc.Name, _ = fn["name"].(string)
			tc.Arguments, _ = fn["arguments"].(string)
			if extra, ok := cm["extra_content"]; ok {
				b, _ := json.Marshal(extra)
				tc.Extra = string(b)
			}
			msg.ToolCalls = append(msg.ToolCalls, tc)
		}
		blocks, _ := mm["content"].([]any)
		for _, b := range blocks {
			bm, _ := b.(map[string]any)
			switch bm["type"] {
			case "tool_use":
				var tc ToolCall
				tc.ID, _ = bm["id"].(string)
				tc.Name, _ = bm["name"].(string)
				args, _ := json.Marshal(bm["input"])
				tc.Arguments = string(args)
				msg.ToolCalls = append(msg.ToolCalls, tc)
			case "tool_result":
				var tr ToolResult
				tr.ToolCallID, _ = bm["tool_use_id"].(string)
				tr.Content = text(bm["content"])
				msg.ToolResults = append(msg.ToolResults, tr)
			}
		}
		req.Messages = append(req.Messages, msg)
	}
}

// text flattens a content value: a string, or a list of text parts.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var sb strings.Builder
		for _, p := range v {
			if pm, ok := p.(map[string]any); ok {
				if t, ok := pm["text"].(string); ok {
					sb.WriteString(t)
				}
			}
		}
		return sb.String()
	}
	return ""
}

func defaultErrorMessage(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "Incorrect API key provided"
	case http.StatusForbidden:
		return "This key may not use this model"
	case http.StatusNotFound:
		return "The model does not exist"
	case http.StatusTooManyRequests:
		return "Rate limit reached; please try again later"
	case 529:
		return "Overloaded"
	}
	if status >= 500 {
		return "The server had an error while processing your request"
	}
	return "Invalid request"
}

// writeError answers status with an error body in the request's protocol.
func (x *exchange) writeError(status int, msg string) {
	var body any
	if x.req.Protocol == Anthropic {
		body = map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(status), "message": msg}}
	} else {
		body = map[string]any{"error": map[string]any{"message": msg, "type": openAIErrorType(status), "param": nil, "code": nil}}
	}
	js, _ := json.Marshal(body)
	x.w.Header().Set("Content-Type", "application/json")
	x.w.WriteHeader(status)
	x.writeBody(append(js, '\n'))
}

// writeBody writes a whole body after its headers: under FaultStallBody,
// only its first half, and then it waits for the client to go away.
func (x *exchange) writeBody(body []byte) {
	if x.b.Fault == FaultTrickleBody {
		for i := range body {
			if !x.wait(x.b.ChunkDelay) || !x.write(body[i:i+1]) {
				return
			}
		}
		return
	}
	if x.b.Fault != FaultStallBody {
		x.write(body)
		return
	}
	if x.write(body[:len(body)/2]) {
		x.hang()
	}
}

func openAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error"
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// wait waits d, or until the client goes away or the server closes; it
// reports whether d passed.
func (x *exchange) wait(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-x.r.Context().Done():
			x.sawCancel()
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.r.Context().Done():
		x.sawCancel()
		return false
	case <-x.s.done:
		return false
	}
}

// hang waits until the client goes away or the server closes.
func (x *exchange) hang() {
	select {
	case <-x.r.Context().Done():
		x.sawCancel()
	case <-x.s.done:
	}
}

// sawCancel records that the client abandoned this request.
func (x *exchange) sawCancel() {
	if x.canceled {
		return
	}
	x.canceled = true
	x.s.mu.Lock()
	x.s.canceled++
	if !x.s.forget {
		x.s.canceledN[x.req.N] = true
	}
	close(x.s.cancelSeen)
	x.s.cancelSeen = make(chan struct{})
	x.s.mu.Unlock()
}

// write writes p and flushes; it reports whether the client still reads.
func (x *exchange) write(p []byte) bool {
	if _, err := x.w.Write(p); err != nil {
		x.sawCancel()
		return false
	}
	if err := http.NewResponseController(x.w).Flush(); err != nil {
		x.sawCancel()
		return false
	}
	return true
}

// event writes one SSE event (name "" for data only) after ChunkDelay.
func (x *exchange) event(name string, data any) bool {
	if !x.wait(x.b.ChunkDelay) {
		return false
	}
	var buf bytes.Buffer
	if name != "" {
		fmt.Fprintf(&buf, "event: %s\n", name)
	}
	switch d := data.(type) {
	case string:
		fmt.Fprintf(&buf, "data: %s\n\n", d)
	default:
		js, _ := json.Marshal(d)
		fmt.Fprintf(&buf, "data: %s\n\n", js)
	}
	return x.write(buf.Bytes())
}

// reset ends the connection with a TCP RST, mid-response or before it.
func (x *exchange) reset() {
	conn, _, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		panic("llmtest: cannot hijack the connection: " + err.Error())
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// startStream writes the headers of an SSE response, and the comments
// the behavior asks for.
func (x *exchange) startStream() bool {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	x.w.WriteHeader(http.StatusOK)
	ok := x.write(bytes.Repeat([]byte(": keep-alive\n\n"), x.b.Comments))
	switch {
	case ok && x.b.Fault == FaultNoData:
		x.hang()
		return false
	case ok && x.b.Fault == FaultResetBeforeData:
		x.reset()
		return false
	}
	return ok
}

// deltasBeforeFault returns the deltas to send before the fault, if any.
func (x *exchange) deltasBeforeFault(all []string) []string {
	if x.b.Fault == FaultNone {
		return all
	}
	n := min(max(x.b.AfterDeltas, 0), len(all))
	return all[:n]
}

// streamFault plays a stream's fault once its deltas were sent; it
// reports whether the stream should go on to its normal end.
func (x *exchange) streamFault(errorEvent func()) bool {
	switch x.b.Fault {
	case FaultTruncate:
		return false
	case FaultReset:
		x.reset()
		return false
	case FaultOversizedLine:
		size := x.b.Size
		if size <= 0 {
			size = 2 << 20
		}
		line := append([]byte(`data: {"x":"`), bytes.Repeat([]byte("a"), size)...)
		x.write(append(line, "\"}\n\n"...))
		return false
	case FaultHang, FaultStallBody:
		x.hang()
		return false
	case FaultStreamError, FaultErrorChunk:
		errorEvent()
		return false
	case FaultUnendedEvent:
		x.unendedEvent()
		return false
	}
	return true
}

// unendedEvent plays FaultUnendedEvent: data lines and no blank line.
func (x *exchange) unendedEvent() {
	size := x.b.Size
	if size <= 0 {
		size = 8 << 20
	}
	var head string
	if x.req.Protocol == Anthropic {
		if !x.write([]byte("event: ping\n")) {
			return
		}
		head = `data: {"type":"ping","pad":"`
	} else {
		head = `data: {"choices":[],"pad":"`
	}
	const tail = "\"}\n"
	line := head + strings.Repeat("a", UnendedEventLine-len(head)-len(tail)) + tail
	batch := []byte(strings.Repeat(line, 16))
	for sent := 0; sent < size; {
		lines := (size - sent + len(line) - 1) / len(line) // to send, rounded up
		n := min(len(batch), lines*len(line))
		if !x.write(batch[:n]) {
			return
		}
		sent += n
	}
	x.write([]byte("\n"))
}

// nonStreamFault plays the fault of a non-stream request before its reply;
// it reports whether to answer normally. body is the normal reply.
func (x *exchange) nonStreamFault(body []byte) bool {
	switch x.b.Fault {
	case FaultReset, FaultResetBeforeData:
		x.reset()
		return false
	case FaultHang, FaultNoData:
		x.hang()
		return false
	case FaultStreamError, FaultErrorChunk:
		x.writeError(http.StatusOK, "The server had an error while processing your request")
		return false
	case FaultTruncate:
		x.w.Header().Set("Content-Type", "application/json")
		x.w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		x.w.WriteHeader(http.StatusOK)
		x.write(body[:len(body)/2])
		x.reset()
		return false
	}
	return true
}

func (x *exchange) writeJSON(body []byte) {
	if !x.nonStreamFault(body) {
		return
	}
	x.w.Header().Set("Content-Type", "application/json")
	x.w.WriteHeader(http.StatusOK)
	x.writeBody(body)
}

func (x *exchange) padded(r reply) string {
	t := r.text()
	if x.b.Fault == FaultOversizedLine {
		size := x.b.Size
		if size <= 0 {
			size = 2 << 20
		}
		if len(t) < size {
			t += strings.Repeat("a", size-len(t))
		}
	}
	return t
}
