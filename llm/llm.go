// Package llm implements domain.LLM: completions from OpenAI, any
// OpenAI-wire endpoint (openai-compatible), Azure OpenAI (all through
// go-openai) and Anthropic (through the official SDK).
//
// Every call goes through one HTTP client built here: connect and
// first-byte timeouts but no overall timeout (streams may run for many
// minutes), response bodies, stream lines and stream events capped in
// size, and a dialer that refuses loopback and private addresses unless
// the operator allowed them, and link-local and metadata ones always.
// Failures before the upstream answered (5xx, refused or reset
// connections) are retried a few times with jittered backoff, as is a
// stream whose provider reported
// its own fault before the reply's first delta (Anthropic's
// overloaded_error event); nothing is retried once a delta was passed on.
package llm

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/parleyhq/parley/domain"
)

// Defaults for the zero values of Config.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultFirstByteTimeout = 60 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultResponseTimeout  = 10 * time.Minute
	DefaultMaxResponseBytes = 8 << 20
	DefaultMaxLineBytes     = 1 << 20
	DefaultMaxRetries       = 2
	DefaultRetryBaseDelay   = 200 * time.Millisecond
)

// DefaultAnthropicMaxTokens is the max_tokens sent to Anthropic when the
// request sets none: the Messages API requires one.
const DefaultAnthropicMaxTokens = 4096

// DefaultAnthropicAdaptiveMaxTokens is the max_tokens sent to Anthropic
// with adaptive thinking when the request sets none: room for thinking
// that the model sizes itself, and the reply after it.
const DefaultAnthropicAdaptiveMaxTokens = 16_000

// Config configures the upstream calls. The zero value is usable.
type Config struct {
	// HTTPClient, when set, makes the calls instead of the client built
	// from the fields below. Its transport is wrapped (size caps, status
	// capture) but its dialer is kept, and with it the connect timeout
	// and the SSRF guard are the caller's business.
	HTTPClient *http.Client
	// ConnectTimeout bounds dialling and the TLS handshake (default 10s).
	ConnectTimeout time.Duration
	// FirstByteTimeout bounds the wait for a stream's response headers
	// and then its first data line, once the request was sent (default
	// 60s): a provider behind an aggregator may answer 200 at once and send
	// only comments while it is stuck.
	FirstByteTimeout time.Duration
	// IdleTimeout bounds the quiet between a stream's data lines once its
	// first came (default 10m, no longer than a whole reply may take):
	// an upstream that stops sending mid-reply, its connection still open,
	// would otherwise hold the stream, kept alive by Parley's keep-alives,
	// until the client gives up. It bounds, too, the quiet within a whole
	// reply's body once its headers came, and an error body's whole
	// arrival.
	IdleTimeout time.Duration
	// ResponseTimeout bounds the wait for a non-stream call's response
	// headers once the request was sent (default 10m, as the OpenAI and
	// Anthropic SDKs wait): providers send them only with the whole
	// reply, so the wait is the reply's writing, minutes for a long one.
	ResponseTimeout time.Duration
	// MaxResponseBytes caps non-stream and error bodies (default 8 MiB),
	// and a streamed reply: its text, refusal and tool calls together.
	MaxResponseBytes int64
	// MaxLineBytes caps each line of a stream (default 1 MiB), and twice
	// it each event of a stream: its lines from one blank line to the next,
	// room for a data line at the cap and the event's short other lines.
	MaxLineBytes int
	// MaxRetries is how many times a call that failed before the upstream
	// answered (5xx, connection refused or reset), or whose stream reported
	// a fault of the provider's before its first delta, is tried again
	// (default 2; negative for none).
	MaxRetries int
	// RetryBaseDelay is the backoff before the first retry; it doubles
	// for each next one and is jittered (default 200ms).
	RetryBaseDelay time.Duration
	// AllowPrivate lets upstreams live on loopback and private addresses
	// (PARLEY_ALLOW_PRIVATE_UPSTREAMS); link-local and metadata addresses
	// stay refused whatever it says.
	AllowPrivate bool
	// OnRetry, when set, is told of each retry before its backoff, with
	// the call's context: a retried call that then succeeds shows nowhere
	// else, so a provider failing half its calls would raise no signal.
	OnRetry func(ctx context.Context, r Retry)
	// RequestID, when set, gives the id of the request a call is made for
	// (Parley's X-Request-Id), which goes to the provider in each call's
	// X-Request-Id, with a suffix of the call's own (see callID): a gateway
	// or proxy between, and a provider that keeps it, log it.
	RequestID func(ctx context.Context) string
	// OnUpstreamID, when set, is told of the id a provider gave its
	// response (x-request-id: OpenAI and most OpenAI-wire servers;
	// request-id: Anthropic), for each attempt, and of "" as each attempt
	// begins: the id its support asks for, which Parley's logs had not kept.
	OnUpstreamID func(ctx context.Context, id string)
}

// Retry is an attempt that failed and is tried again (Config.OnRetry).
type Retry struct {
	ProviderType domain.ProviderType
	Attempt      int    // the attempt that failed, from 1
	Reason       string // "status_5xx", "connection" (refused, reset) or "stream_fault" (an error event before the first delta)
	Status       int    // the status it answered; 0 for none
	Wait         time.Duration
}

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.FirstByteTimeout <= 0 {
		c.FirstByteTimeout = DefaultFirstByteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.RetryBaseDelay <= 0 {
		c.RetryBaseDelay = DefaultRetryBaseDelay
	}
	return c
}

// maxEventBytes caps one event of a stream (see MaxLineBytes).
func (c Config) maxEventBytes() int { return 2 * c.MaxLineBytes }

// Client calls upstream models. It is safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
	// thoughts remembers Anthropic's thinking before tool calls, for
	// clients that send the calls back without it.
	thoughts thoughts
}

var _ domain.LLM = (*Client)(nil)

// New returns a Client for cfg.
func New(cfg Config) *Client {
	cfg = cfg.withDefaults()
	return &Client{cfg: cfg, http: newHTTPClient(cfg)}
}

// attemptFunc makes one attempt at a completion against one provider type.
type attemptFunc func(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error)

// callSpec is what an attempt needs besides its exchange.
type callSpec struct {
	req     domain.LLMRequest
	onDelta func(domain.Delta) error
	start   time.Time
	// noStreamOptions is set once the upstream refused stream_options
	// (see refusedStreamOptions): later attempts go without it.
	noStreamOptions bool
	// completionTokens is set once the upstream refused max_tokens (see
	// refusedMaxTokens): later attempts name the limit
	// max_completion_tokens.
	completionTokens bool
	// noReasoning is set once the upstream refused the reasoning sent
	// back with tool calls (see refusedReasoning): later attempts go
	// without it.
	noReasoning bool
	// nineCharIDs is set once the upstream refused tool call ids that are
	// not nine letters and digits (see refusedToolCallIDs): the request's
	// go as nineCharID makes them from then on.
	nineCharIDs bool
}

// Complete runs one completion; see domain.LLM. When onDelta is non-nil the
// call streams. On an error after part of a stream arrived, the partial
// result (content so far, usage if the upstream sent it) comes back with
// the error.
func (c *Client) Complete(ctx context.Context, req domain.LLMRequest, onDelta func(domain.Delta) error) (*domain.LLMResult, error) {
	const op = "llm.Complete"
	var do attemptFunc
	switch req.Endpoint.Type {
	case domain.ProviderOpenAI, domain.ProviderOpenAICompatible, domain.ProviderAzureOpenAI:
		do = c.callOpenAI
	case domain.ProviderAnthropic:
		do = c.callAnthropic
	default:
		return nil, unsupportedType(op, req.Endpoint.Type)
	}
	if req.Endpoint.Type == domain.ProviderAzureOpenAI {
		if err := azureCheck(op, req); err != nil {
			return nil, err
		}
	}
	var rewritten []domain.LLMMessage
	if req.Endpoint.Type == domain.ProviderOpenAICompatible {
		if rewritten = refusalsAsText(req.Messages); rewritten != nil {
			req.Messages = rewritten
		}
	}
	cs := &callSpec{req: req, onDelta: onDelta, start: time.Now()}
	for attempt := 0; ; attempt++ {
		openAIWire := req.Endpoint.Type != domain.ProviderAnthropic
		// A whole reply's body is kept for what go-openai's types drop: the
		// calls' extra_content, an openai-compatible server's reasoning, and
		// DeepSeek's cache hits, which an openai provider pointed at its
		// base URL gets too.
		keep := openAIWire && (len(req.Tools) > 0 || req.Endpoint.Type == domain.ProviderOpenAICompatible ||
			req.Endpoint.Type == domain.ProviderOpenAI && req.Endpoint.BaseURL != "")
		ex := &exchange{stream: onDelta != nil, openAIWire: openAIWire, keepBody: keep}
		res, err := do(withExchange(ctx, ex), ex, cs)
		if rewritten != nil {
			if res == nil {
				res = &domain.LLMResult{} // a failed call's debug shows what went up too
			}
			if res.Sent == nil {
				res.Sent = rewritten
			}
		}
		if err == nil {
			return res, nil
		}
		if c.again(ctx, req.Endpoint.Type, ex, err, attempt) {
			continue
		}
		// What the provider took, for usage, is the last attempt's
		// (earlier ones were refused or never answered). A whole reply
		// cut off or over its cap was generated all the same; a 200 whose
		// body came whole but holds no reply (a gateway's error object,
		// an HTML page) was not.
		status, _, _ := ex.response()
		accepted := status >= 200 && status < 300 && (ex.stream || ex.bodyCut())
		if notTaken := !ex.taken(); accepted || notTaken {
			if res == nil {
				res = &domain.LLMResult{}
			}
			res.Accepted, res.NotTaken = accepted, notTaken
		}
		return res, c.toDomainError(ctx, op, ex, req.Endpoint.APIKey.Reveal(), err)
	}
}

// unsupportedType is the error of a call to a provider of type t, which
// Parley does not speak.
func unsupportedType(op string, t domain.ProviderType) error {
	return &domain.Error{Kind: domain.Invalid, Op: op,
		Message: "AI provider type " + quote(string(t)) + " is not supported; use openai, openai-compatible, azure-openai or anthropic"}
}

// again reports whether attempt, a call to a provider of type t that
// failed with err, is to be tried again (see retryable and MaxRetries),
// once its backoff has passed, telling OnRetry first.
func (c *Client) again(ctx context.Context, t domain.ProviderType, ex *exchange, err error, attempt int) bool {
	if attempt >= c.cfg.MaxRetries || ctx.Err() != nil || !retryable(ex, err) {
		return false
	}
	wait := backoff(c.cfg.RetryBaseDelay, attempt)
	if c.cfg.OnRetry != nil {
		status, _, _ := ex.response()
		reason := "connection"
		var fb *faultBeforeReply
		switch {
		case status >= 500: // also an Anthropic stream's 5xx, whose error body the SDK reads as a fault
			reason = "status_5xx"
		case errors.As(err, &fb):
			reason = "stream_fault"
		}
		c.cfg.OnRetry(ctx, Retry{ProviderType: t, Attempt: attempt + 1, Reason: reason, Status: status, Wait: wait})
	}
	return sleep(ctx, wait)
}

// refusalsAsText returns msgs with each refusal sent as its message's
// text, for the OpenAI-compatible servers, which have no refusal member
// and may refuse a member they do not know. The model then reads what it
// said when it declined. It returns nil when no message has a refusal.
// (Anthropic gets no refused turn at all: see anthropicMessages.)
func refusalsAsText(msgs []domain.LLMMessage) []domain.LLMMessage {
	if !slices.ContainsFunc(msgs, func(m domain.LLMMessage) bool { return m.Refusal != "" }) {
		return nil
	}
	out := slices.Clone(msgs)
	for i, m := range out {
		if m.Refusal == "" {
			continue
		}
		if m.Content != "" {
			m.Content += "\n"
		}
		m.Content, m.Refusal = m.Content+m.Refusal, ""
		out[i] = m
	}
	return out
}

// backoff returns the jittered wait before retry attempt+1: between half
// and all of base doubled per attempt.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// maxBackoff bounds one wait between retries, however many came before.
const maxBackoff = 30 * time.Second

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// firstByte is the time from the call to the response headers of the
// attempt that answered.
func firstByte(ex *exchange, start time.Time) time.Duration {
	if _, _, at := ex.response(); !at.IsZero() {
		return at.Sub(start)
	}
	return 0
}
