package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parleyhq/parley/domain"
)

// privateAddrError is the dialer's refusal of an address that is not on
// the public internet; with metadata, of a link-local or metadata one,
// which is refused whether or not private ones are allowed.
type privateAddrError struct {
	addr     string
	metadata bool
}

func (e *privateAddrError) Error() string {
	if e.metadata {
		return "refused to connect to " + e.addr + ": a link-local or cloud metadata address, which no AI provider may use"
	}
	return "refused to connect to " + e.addr + ": a loopback, private or shared address (PARLEY_ALLOW_PRIVATE_UPSTREAMS is not set)"
}

// guardControl is the net.Dialer Control func of the SSRF guard, for
// private upstreams allowed or not. It runs after DNS resolution, on the
// address actually dialled, so a host name that resolves to a refused
// address (DNS rebinding) is refused too. A link-local or metadata address
// is refused either way.
func guardControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		ip := net.ParseIP(host)
		switch {
		case err != nil || ip == nil:
			return &privateAddrError{addr: address, metadata: allowPrivate}
		case domain.IsMetadataIP(ip):
			return &privateAddrError{addr: address, metadata: true}
		case !allowPrivate && domain.IsPrivateIP(ip):
			return &privateAddrError{addr: address}
		}
		return nil
	}
}

// newHTTPClient builds the client every upstream call goes through: a
// dialer with the connect timeout and the SSRF guard, a bound on the wait
// for the response headers, no proxy (a proxy would dial the upstream on
// our behalf, past the guard) and no overall timeout, since streams may
// run for many minutes.
//
// A stream's headers come before its first delta, so FirstByteTimeout
// bounds them (and then its first data line, see lineCapReader.quiet); a
// provider answers a non-stream call only once the whole
// reply is written, so ResponseTimeout, minutes, bounds those. Each kind
// of call has its own http.Transport for its ResponseHeaderTimeout.
func newHTTPClient(cfg Config) *http.Client {
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = &transport{base: base, stream: base, cfg: cfg}
		return &hc
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	dialer.Control = guardControl(cfg.AllowPrivate)
	// Idle connections are kept for bursts: each one closed after a burst
	// is dialled again at the next.
	base := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		ExpectContinueTimeout: time.Second,
	}
	stream := base.Clone()
	stream.ResponseHeaderTimeout = cfg.FirstByteTimeout
	return &http.Client{Transport: &transport{base: base, stream: stream, cfg: cfg}}
}

// errRedirect ends a call the provider answered with a 3xx (see
// RoundTrip), whose status the call's error then gives (toDomainError).
var errRedirect = errors.New("the AI provider answered with a redirect, which is not followed")

// exchange is the per-attempt state shared between Complete and the
// transport through the request context: what the upstream answered
// (status and headers, which the SDKs' errors do not all keep), when, and
// which cap, if any, cut the body.
type exchange struct {
	stream     bool           // the call streams: cap lines and events, not the body
	openAIWire bool           // cap the non-data lines dataLines accumulates
	keepBody   bool           // keep a whole reply's body whole (see wholeReplyExtras, keptChoice, keptCacheHits)
	jsonSet    map[string]any // top-level fields to set in the JSON request body

	mu           sync.Mutex
	status       int
	header       http.Header // the response's own: nothing writes to it once RoundTrip returns
	headersAt    time.Time
	lineTooLong  bool
	eventTooLong bool
	tooLarge     bool
	replied      bool  // the SDK read a whole streamed reply (see markReplied)
	wrote        bool  // the request went out whole (see taken)
	gotData      bool  // the stream sent its first data line
	quietEnd     error // errNoData, errQuiet or errSlow: why a quiet timer ended the call

	// replyBytes is what a stream's reply holds so far (see addReply);
	// only the call's goroutine reads and writes it.
	replyBytes int64

	// lines is the stream's body reader, for the data lines read so far
	// (see coalescer); set by RoundTrip and read in the same goroutine.
	lines *lineCapReader
	// body is a whole reply's body reader, for its first bytes (see
	// capReader.head); set by RoundTrip and read in the same goroutine.
	body *capReader
}

// streamHead returns a stream's first bytes (at most headBytes) read
// before its first data line.
func (ex *exchange) streamHead() []byte {
	if ex == nil || ex.lines == nil {
		return nil
	}
	return ex.lines.head
}

// bodyHead returns the first bytes of a whole (not streamed) reply's
// body, all of it when it was at most headBytes long.
func (ex *exchange) bodyHead() []byte {
	if ex == nil || ex.body == nil {
		return nil
	}
	return ex.body.head
}

type exchangeKey struct{}

func withExchange(ctx context.Context, ex *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, ex)
}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

func (ex *exchange) response() (status int, header http.Header, at time.Time) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.status, ex.header, ex.headersAt
}

// taken says whether the provider may have taken the last request, to
// answer (and bill) it: it went out whole, and was answered 2xx or not
// yet. A request cancelled before it went out (while it waited for a
// connection, or was being written) reached no one; one refused (4xx,
// 5xx) or redirected was not taken, whatever ended the call after it (the
// client that left during the backoff before a retry).
func (ex *exchange) taken() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.wrote && ex.status < 300
}

// markReplied records that the SDK read the stream's last event: what is
// left of the body is its framing, which Close may drain (see drainClose).
func (ex *exchange) markReplied() {
	ex.mu.Lock()
	ex.replied = true
	ex.mu.Unlock()
}

func (ex *exchange) wasReplied() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.replied
}

// markData records a stream's first data line (see endQuiet).
func (ex *exchange) markData() {
	ex.mu.Lock()
	ex.gotData = true
	ex.mu.Unlock()
}

// endQuiet records why the quiet timer ends the stream, and reports
// whether it does: errNoData only while no data line came.
func (ex *exchange) endQuiet(cause error) bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if cause == errNoData && ex.gotData {
		return false
	}
	ex.quietEnd = cause
	return true
}

// endedQuiet is endQuiet's cause, nil when the timer ended nothing.
func (ex *exchange) endedQuiet() error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.quietEnd
}

func (ex *exchange) sawData() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.gotData
}

// errNoData ends a stream that sent no data line within the first-byte
// timeout; errQuiet one that then sent none for the idle timeout, or a
// whole reply whose body paused that long.
var (
	errNoData = errors.New("the stream sent no data within the first-byte timeout")
	errQuiet  = errors.New("the response sent nothing for the idle timeout")
	errSlow   = errors.New("the whole reply did not come within the response timeout")
)

// addReply counts a streamed delta's bytes (text, refusal, tool calls'
// ids, names and arguments) against limit, MaxResponseBytes, which caps a
// whole reply's body. A stream's lines and events are capped one by one;
// without this, an upstream that streams without end would grow the
// reply, which is kept whole (and stored with its turn), until memory ran
// out.
func (ex *exchange) addReply(d domain.Delta, limit int64) error {
	n := len(d.Content) + len(d.Refusal) + len(d.Reasoning)
	for _, tc := range d.ToolCalls {
		n += len(tc.ID) + len(tc.Name) + len(tc.Arguments) + len(tc.ExtraContent)
	}
	if ex.replyBytes += int64(n); ex.replyBytes <= limit {
		return nil
	}
	ex.mu.Lock()
	ex.tooLarge = true
	ex.mu.Unlock()
	return &limitError{msg: "the streamed reply exceeded its size limit"}
}

func (ex *exchange) capHit() (lineTooLong, eventTooLong, tooLarge bool) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.lineTooLong, ex.eventTooLong, ex.tooLarge
}

// transport records each response in the request's exchange, bounds the
// bytes read from it, and applies the exchange's JSON body fields.
type transport struct {
	base   http.RoundTripper // non-stream calls
	stream http.RoundTripper // stream calls
	cfg    Config
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		ex = &exchange{}
	}
	if len(ex.jsonSet) > 0 && req.Body != nil {
		r, err := setJSONFields(req, ex.jsonSet)
		if err != nil {
			return nil, err
		}
		req = r
	}
	// The request runs under a context of its own, which the caller's
	// cancellation reaches until the body is drained (see drainClose):
	// net/http closes a connection whose request is cancelled before the
	// body's end, and a caller returns (a handler answers) as soon as it
	// has the reply, often before the body's last bytes arrive.
	parent := req.Context()
	if parent.Err() != nil {
		// Cancelled already: AfterFunc below would cancel the request's
		// context only from a goroutine of its own, after the request
		// may have gone out.
		return nil, context.Cause(parent)
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	detach := context.AfterFunc(parent, func() { cancel(context.Cause(parent)) })
	base := t.base
	if ex.stream {
		base = t.stream
	}
	// The response an exchange records is its last request's: a request
	// made again (see callOpenAI) starts with none.
	ex.mu.Lock()
	ex.status, ex.header, ex.headersAt, ex.wrote = 0, nil, time.Time{}, false
	ex.mu.Unlock()
	trace := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(w httptrace.WroteRequestInfo) {
		if w.Err == nil {
			ex.mu.Lock()
			ex.wrote = true
			ex.mu.Unlock()
		}
	}})
	out := req.WithContext(trace)
	if t.cfg.RequestID != nil {
		if id := t.cfg.RequestID(parent); id != "" {
			out.Header = out.Header.Clone() // a RoundTripper leaves its request as it was
			out.Header.Set("X-Request-Id", callID(id))
		}
	}
	if t.cfg.OnUpstreamID != nil {
		t.cfg.OnUpstreamID(parent, "") // none yet: a retry after a lost connection has none
	}
	sent := time.Now()
	resp, err := base.RoundTrip(out)
	if err != nil {
		detach()
		cancel(nil)
		return nil, err
	}
	resp.Body = &callBody{ReadCloser: resp.Body, detach: detach, cancel: cancel}
	ex.mu.Lock()
	ex.status, ex.header, ex.headersAt = resp.StatusCode, resp.Header, time.Now()
	ex.mu.Unlock()
	if t.cfg.OnUpstreamID != nil {
		if id := cmp.Or(resp.Header.Get("X-Request-Id"), resp.Header.Get("Request-Id")); id != "" {
			t.cfg.OnUpstreamID(parent, id)
		}
	}

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// A redirect is not followed: net/http would send the request again
		// to wherever it points, with the provider's key in Anthropic's
		// x-api-key or Azure's api-key header, which it keeps across hosts
		// (it drops only Authorization and cookies). A chat completions API
		// does not redirect a POST; a baseUrl that answers with one is to be
		// corrected. Nor is any 3xx a reply, though the SDKs would read one
		// without a Location as one (go-openai's streams and whole replies,
		// Anthropic's streams).
		drainClose(resp.Body)
		return nil, errRedirect
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		// Error bodies are read here, bounded, so the SDKs' unbounded reads
		// see at most MaxResponseBytes and the connection is released even
		// when an SDK forgets to close the body (go-openai's stream path).
		// An error body is short: it has the idle timeout to arrive whole,
		// and what came by then is the body, the status the error.
		stalled := time.AfterFunc(t.cfg.IdleTimeout, func() { cancel(errQuiet) })
		body, _ := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxResponseBytes))
		stalled.Stop()
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
	case ex.stream:
		ex.lines = &lineCapReader{rc: resp.Body, ex: ex, maxLine: t.cfg.MaxLineBytes, maxEvent: t.cfg.maxEventBytes(),
			maxOther: t.cfg.MaxResponseBytes, countOther: ex.openAIWire}
		ex.lines.watchQuiet(max(t.cfg.FirstByteTimeout-time.Since(sent), 0), t.cfg.IdleTimeout, cancel)
		resp.Body = ex.lines
	default:
		ex.body = &capReader{rc: resp.Body, ex: ex, left: t.cfg.MaxResponseBytes, keepAll: ex.keepBody}
		if ex.keepBody && resp.ContentLength > 0 && resp.ContentLength <= t.cfg.MaxResponseBytes {
			ex.body.all = make([]byte, 0, resp.ContentLength)
		}
		// The response timeout bounds the whole reply, its body too.
		ex.body.watchQuiet(t.cfg.IdleTimeout, sent.Add(t.cfg.ResponseTimeout), cancel)
		resp.Body = ex.body
	}
	return resp, nil
}

// callID is the X-Request-Id of one call for the request whose id is id:
// that id, then "-" and eight random hex digits. Each call has its own, as
// servers such as vLLM take the header as their own request's id and
// refuse one while another of that id runs: a retry, or two requests a
// client sent with one X-Request-Id.
func callID(id string) string {
	return id + "-" + strconv.FormatUint(uint64(rand.Uint32())|1<<32, 16)[1:]
}

// setJSONFields returns a clone of req whose JSON body has fields set at
// the top level. It lets go-openai requests carry values its structs
// cannot: temperature 0 and top_p 0 (dropped by omitempty), and
// max_completion_tokens for reasoning models without its local checks.
func setJSONFields(req *http.Request, fields map[string]any) (*http.Request, error) {
	raw, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("llm: request body is not a JSON object: %w", err)
	}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body[k] = b
	}
	if raw, err = json.Marshal(body); err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	r.ContentLength = int64(len(raw))
	r.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	return r, nil
}

// limitError is returned by the body readers when a cap is hit.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

// Draining a body after its reply. net/http puts an HTTP/1.1 connection
// back in its pool only when the response body was read to its end. The
// SDKs stop reading where the reply ends, at the end of the JSON value or
// at the stream's last event; a server that sends its body chunked writes
// the chunked body's end ("0\r\n\r\n") after that, often in a later
// packet, and closing the body before it arrived closed the connection:
// the next call dialled a new one (an upstream on HTTP/2 loses only the
// stream). Once the reply is complete, Close reads what is left in the
// background, up to drainBytes and for at most drainWait, so the call
// does not wait for it and an upstream that never ends its body costs a
// closed connection, as before.
const (
	drainBytes = 4 << 10
	drainWait  = time.Second
)

// callBody is a response body whose request's context is ended by Close,
// or by the caller's until detach. Bodies returned by RoundTrip are one.
type callBody struct {
	io.ReadCloser
	detach func() bool // stops the caller's cancellation; false once it came
	cancel context.CancelCauseFunc
}

func (b *callBody) Close() error {
	err := b.ReadCloser.Close()
	b.detach()
	b.cancel(nil)
	return err
}

// drainClose reads what is left of rc in the background and closes it.
// It first stops the caller's cancellation from reaching the request; a
// call already cancelled has lost its connection, and is closed at once.
func drainClose(rc io.ReadCloser) {
	if b, ok := rc.(*callBody); ok && !b.detach() {
		_ = rc.Close()
		return
	}
	go func() {
		t := time.AfterFunc(drainWait, func() { _ = rc.Close() }) // ends a read that waits
		_, _ = io.CopyN(io.Discard, rc, drainBytes)
		t.Stop()
		_ = rc.Close()
	}()
}

// quietWatch ends a call whose body goes quiet: its timer, once what
// counts has come (a stream's first data line; a whole reply's headers),
// looks at the time of the last mark when it fires, and ends the call with
// errQuiet when that is idle ago or more, rather than being reset at every
// read.
type quietWatch struct {
	timer *time.Timer
	idle  time.Duration
	last  atomic.Int64 // the last mark, in Unix nanoseconds
	// until, when set, ends the call with errSlow then however busy: a
	// whole reply's body sent a byte at a time, each within the idle
	// timeout, would else hold the call for ever.
	until time.Time
}

func (q *quietWatch) mark() { q.last.Store(time.Now().UnixNano()) }

// expired is the timer's func once marks count.
func (q *quietWatch) expired(ex *exchange, cancel context.CancelCauseFunc) {
	if !q.until.IsZero() && !time.Now().Before(q.until) {
		ex.endQuiet(errSlow)
		cancel(errSlow)
		return
	}
	quiet := time.Since(time.Unix(0, q.last.Load()))
	if quiet >= q.idle {
		ex.endQuiet(errQuiet)
		cancel(errQuiet)
		return
	}
	next := q.idle - quiet
	if !q.until.IsZero() {
		next = min(next, time.Until(q.until))
	}
	q.timer.Reset(next)
}

func (q *quietWatch) stop() {
	if q.timer != nil {
		q.timer.Stop()
	}
}

// capReader fails once more than left bytes were read. Closed before the
// end of a body it has read without fault, it drains the rest (the reply
// is a whole JSON value, so what follows it is framing).
//
// It keeps the body's first headBytes in head: a reply with no choices
// may be an error the server sent with status 200 (OpenRouter does, as
// {"error":{"message",...}}), whose message the SDK's decoding drops.
//
// Its quiet watch ends a body that sends nothing for the idle timeout:
// the response timeout bounds only the wait for the headers.
type capReader struct {
	rc    io.ReadCloser
	ex    *exchange
	left  int64
	err   error
	ended bool // the body's reader returned an error (io.EOF included)
	cut   bool // the body ended before its end: over its cap, or a read failed
	head  []byte
	all   []byte // with keepAll, the whole body read so far
	quiet quietWatch

	// names is which of keptNames all holds, quoted (see holds), found in
	// one pass over its first namesLen bytes.
	names    uint8
	namesLen int

	keepAll bool
}

// watchQuiet starts the quiet watch: idle is the idle timeout, until when
// the whole body must have come, cancel the call's.
func (r *capReader) watchQuiet(idle time.Duration, until time.Time, cancel context.CancelCauseFunc) {
	r.quiet.idle, r.quiet.until = idle, until
	r.quiet.mark()
	r.quiet.timer = time.AfterFunc(min(idle, time.Until(until)), func() { r.quiet.expired(r.ex, cancel) })
}

// headBytes bounds capReader.head: an error body is short, and a reply
// longer than this is not one.
const headBytes = 1 << 10

func (r *capReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if int64(len(p)) > r.left+1 {
		p = p[:r.left+1]
	}
	n, err := r.rc.Read(p)
	if int64(n) > r.left {
		r.ex.mu.Lock()
		r.ex.tooLarge = true
		r.ex.mu.Unlock()
		r.err = &limitError{msg: "response body exceeded its size limit"}
		r.cut = true
		return 0, r.err
	}
	r.left -= int64(n)
	if room := headBytes - len(r.head); room > 0 {
		r.head = append(r.head, p[:min(n, room)]...)
	}
	if r.keepAll {
		r.all = append(r.all, p[:n]...)
	}
	if n > 0 {
		r.quiet.mark()
	}
	if r.ended = err != nil; r.ended {
		r.quiet.stop()
		r.cut = err != io.EOF
	}
	return n, err
}

// keptNames are the member names a kept body is looked for, each before
// decoding it again for what go-openai's types drop (see keptChoice).
var keptNames = [...]string{"reasoning", "reasoning_details", "error", "prompt_cache_hit_tokens", "extra_content"}

// holds says whether the kept body holds name between quotes, as
// bytes.Contains(r.all, `"name"`) would: for keptNames, from one pass over
// the body that looks at the bytes after each quote, made again only if the
// body grew since.
func (r *capReader) holds(name string) bool {
	k := slices.Index(keptNames[:], name)
	if k < 0 {
		return bytes.Contains(r.all, []byte(`"`+name+`"`))
	}
	if r.namesLen != len(r.all) {
		r.names, r.namesLen = 0, len(r.all)
		for b := r.all; ; {
			i := bytes.IndexByte(b, '"')
			if i < 0 {
				break
			}
			b = b[i+1:]
			if len(b) == 0 {
				break
			}
			for j, n := range keptNames {
				if len(b) > len(n) && b[len(n)] == '"' && string(b[:len(n)]) == n {
					r.names |= 1 << j
				}
			}
		}
	}
	return r.names&(1<<k) != 0
}

// bodyCut says whether a whole reply's body was lost on its way: it went
// over its cap, or a read failed (a reset, a body shorter than its
// length, the quiet watch). A body that arrived whole but is no reply (an
// error object, an HTML page) was not.
func (ex *exchange) bodyCut() bool {
	return ex != nil && ex.body != nil && ex.body.cut
}

func (r *capReader) Close() error {
	r.quiet.stop()
	if r.ended || r.err != nil {
		return r.rc.Close()
	}
	drainClose(r.rc)
	return nil
}

// lineCapReader bounds what an SDK keeps of a stream: it fails on a line
// longer than maxLine bytes, and on an event (the lines from one blank
// line to the next, whose data lines the Anthropic SDK joins in one buffer
// until the blank line comes) longer than maxEvent, newlines included.
// With countOther it also fails once the lines that are not "data:" lines
// (which dataLines keeps in memory for the whole stream) pass maxOther.
//
// A blank line is an empty one, or one of a lone "\r" (CRLF streams), as
// the SDKs' line readers see it; a line of spaces ends no event.
type lineCapReader struct {
	rc         io.ReadCloser
	ex         *exchange
	maxLine    int
	maxEvent   int
	maxOther   int64
	countOther bool

	lineLen  int
	last     byte   // the last byte of the current line
	prefix   []byte // the first bytes of the current line, spaces trimmed
	eventLen int    // the bytes of the current event's lines before this one
	other    int64
	err      error
	ended    bool // the body's reader returned an error (io.EOF included)

	dataLines int // whole "data:" lines read, for coalescer
	// head is the body's first bytes (headBytes) read before the first
	// data line: an error body sent in place of the stream (see
	// streamEnd).
	head []byte

	// quiet ends the stream when its first data line has not come within
	// the first-byte timeout (the headers came, but comments, an
	// aggregator's keep-alives, or silence are no reply), or when no data
	// line came for the idle timeout after one. Read marks it once per
	// read that ended a data line; its timer, reset to the idle timeout at
	// the first, looks at the last mark when it fires.
	quiet quietWatch
}

// watchQuiet starts quiet: first is what is left of the first-byte
// timeout, idle the idle timeout, cancel the call's.
func (r *lineCapReader) watchQuiet(first, idle time.Duration, cancel context.CancelCauseFunc) {
	r.quiet.idle = idle
	r.quiet.timer = time.AfterFunc(first, func() {
		if r.ex.endQuiet(errNoData) {
			cancel(errNoData)
			return
		}
		// A data line came (marked before markData): look again an idle
		// timeout after the last.
		r.quiet.expired(r.ex, cancel)
	})
}

func (r *lineCapReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.rc.Read(p)
	r.ended = err != nil
	if r.dataLines == 0 && len(r.head) < headBytes {
		r.head = append(r.head, p[:min(n, headBytes-len(r.head))]...)
	}
	lines := r.dataLines
	for b := p[:n]; len(b) > 0; {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if len(seg) > 0 {
			r.addToLine(seg)
			switch {
			case r.lineLen > r.maxLine:
				return 0, r.fail(&r.ex.lineTooLong, fmt.Sprintf("stream line exceeded %d bytes", r.maxLine))
			case r.eventLen+r.lineLen > r.maxEvent:
				return 0, r.fail(&r.ex.eventTooLong, fmt.Sprintf("stream event exceeded %d bytes", r.maxEvent))
			}
		}
		if i < 0 {
			break
		}
		r.endLine()
		b = b[i+1:]
	}
	if r.countOther && r.other > r.maxOther {
		return 0, r.fail(&r.ex.tooLarge, "stream sent too many bytes outside data lines")
	}
	if r.dataLines > lines {
		r.quiet.mark()
		r.head = nil // a stream after all: not kept while it lasts
	}
	return n, err
}

// addToLine accounts for seg, a piece of the current line.
func (r *lineCapReader) addToLine(seg []byte) {
	r.lineLen += len(seg)
	r.last = seg[len(seg)-1]
	for _, c := range seg {
		if len(r.prefix) == 5 {
			break
		}
		if len(r.prefix) == 0 && (c == ' ' || c == '\t' || c == '\r') {
			continue
		}
		r.prefix = append(r.prefix, c)
	}
}

func (r *lineCapReader) endLine() {
	if r.lineLen == 0 || (r.lineLen == 1 && r.last == '\r') {
		r.eventLen = 0
	} else {
		r.eventLen += r.lineLen + 1
		switch {
		case string(r.prefix) == "data:":
			if r.dataLines++; r.dataLines == 1 {
				r.quiet.mark() // before markData: see watchQuiet
				r.ex.markData()
				if r.quiet.timer != nil {
					r.quiet.timer.Reset(r.quiet.idle) // from the first-byte timeout's end to the idle timeout's
				}
			}
		case r.countOther:
			r.other += int64(r.lineLen) + 1
		}
	}
	r.lineLen = 0
	r.prefix = r.prefix[:0]
}

// fail records the cap hit in the exchange and ends the stream with it.
func (r *lineCapReader) fail(flag *bool, msg string) error {
	r.ex.mu.Lock()
	*flag = true
	r.ex.mu.Unlock()
	r.err = &limitError{msg: msg}
	return r.err
}

// Close drains the rest of the body when the SDK read the whole reply
// (see drainClose); a stream closed before its end is closed at once, which
// is what cancels the upstream's generation.
func (r *lineCapReader) Close() error {
	r.quiet.stop()
	if r.ended || r.err != nil || !r.ex.wasReplied() {
		return r.rc.Close()
	}
	drainClose(r.rc)
	return nil
}
