package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/anthropics/anthropic-sdk-go"
	openai "github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
)

// deltaError marks an error returned by the caller's onDelta: it aborts
// the call and goes back to the caller unchanged.
type deltaError struct{ err error }

func (e *deltaError) Error() string { return e.err.Error() }
func (e *deltaError) Unwrap() error { return e.err }

// errTruncated is the error of a stream that ended without a finish
// reason; the domain records such calls as truncated.
var errTruncated = &domain.Error{Kind: domain.Upstream, Err: domain.ErrTruncated,
	Message: "the AI provider ended the stream without a finish reason (truncated); send the request again"}

// streamEnd is the error of a stream that ended without a finish reason:
// errTruncated, unless no data line came, and what came instead was an
// error body (some gateways answer a stream so, status 200), whose
// message it gives (apiKey, the call's, kept out), or no event stream at
// all (a sign-in page, a proxy that ignores stream and answers the whole
// reply, a baseUrl that names a web site), which sending again would meet
// again.
func streamEnd(ex *exchange, apiKey string) error {
	if ex.sawData() {
		return errTruncated
	}
	if head := ex.streamHead(); json.Valid(head) {
		if m := sanitize(bodyMessage(head), apiKey, 200); m != "" {
			return domain.Errorf(domain.Upstream, "the AI provider answered with an error instead of a stream: %s", m)
		}
	}
	_, h, _ := ex.response()
	ct := h.Get("Content-Type")
	if ct == "" {
		return errTruncated
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		mt = "a Content-Type Parley cannot read"
	case mt == "text/event-stream":
		return errTruncated
	}
	return domain.Errorf(domain.Upstream, "the AI provider answered the stream with %s, not an event stream (text/event-stream): "+
		"check the provider's baseUrl, and that nothing between Parley and the provider (a proxy, a sign-in page) answers in its place", mt)
}

// faultBeforeReply marks a provider's fault reported inside a stream
// before any delta of the reply was passed on (see anthropicServerFault):
// the caller has seen nothing, so the call may be tried again, as the
// same fault answered with its HTTP status is.
type faultBeforeReply struct{ err error }

func (e *faultBeforeReply) Error() string { return e.err.Error() }
func (e *faultBeforeReply) Unwrap() error { return e.err }

// retryable reports whether a failed attempt may be tried again: the
// upstream answered 5xx, or the connection was refused or dropped before
// any response (a stream's: before its first data line, its first byte as
// the first-byte timeout counts it), or a stream reported a fault of the
// provider's before its first delta (faultBeforeReply). Never once a delta
// was passed on, never on a timeout (retrying would multiply the wait) and
// never for the SSRF guard.
func retryable(ex *exchange, err error) bool {
	var de *deltaError
	var pe *privateAddrError
	var fb *faultBeforeReply
	switch {
	case errors.As(err, &de) || errors.As(err, &pe):
		return false
	case errors.As(err, &fb):
		return true
	}
	status, _, _ := ex.response()
	switch {
	case status >= 500:
		return true
	case ex.stream && status >= 200 && status < 300 && !ex.sawData():
		return isConnDropped(err)
	case status != 0:
		return false
	}
	return isConnDropped(err) || errors.Is(err, syscall.ECONNREFUSED)
}

func isConnDropped(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// toDomainError turns what an attempt returned into a domain error whose
// message says what failed and what to do, without the API key, the
// upstream's body or anything in it that looks like a credential.
func (c *Client) toDomainError(ctx context.Context, op string, ex *exchange, apiKey string, err error) error {
	var de *deltaError
	if errors.As(err, &de) {
		return de.err
	}
	var dErr *domain.Error
	if errors.As(err, &dErr) {
		return domain.Wrap(op, err)
	}
	e := &domain.Error{Kind: domain.Upstream, Op: op, Err: &causeError{msg: sanitize(err.Error(), apiKey, 500), err: err}}
	status, header, _ := ex.response()
	upMsg, sdkStatus, inBand := upstreamMessage(err)
	if status < 400 && sdkStatus >= 400 {
		status = sdkStatus
	}
	upMsg = sanitize(upMsg, apiKey, 200)
	lineTooLong, eventTooLong, tooLarge := ex.capHit()
	var pe *privateAddrError
	var ne net.Error
	var dnsErr *net.DNSError

	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		e.Kind, e.Message = domain.Canceled, "the call was canceled before the AI provider finished"
	case ctx.Err() != nil:
		e.Kind, e.Message = domain.Timeout, "the AI provider did not finish within the time allowed for the call"
	case ex.endedQuiet() == errNoData:
		e.Kind, e.Message = domain.Timeout, "the AI provider did not answer within "+seconds(c.cfg.FirstByteTimeout)+" (its stream sent no data)"
	case ex.endedQuiet() == errQuiet && ex.stream:
		e.Kind, e.Message = domain.Timeout, "the AI provider's stream sent nothing for "+seconds(c.cfg.IdleTimeout)+" and was ended"
	case ex.endedQuiet() == errQuiet:
		e.Kind, e.Message = domain.Timeout, "the AI provider's response stopped for "+seconds(c.cfg.IdleTimeout)+" before its end and was ended"
	case ex.endedQuiet() == errSlow:
		e.Kind, e.Message = domain.Timeout, "the AI provider did not finish its reply within "+seconds(c.cfg.ResponseTimeout)+" and it was ended"
	case lineTooLong:
		e.Message = fmt.Sprintf("the AI provider's stream line exceeded %d bytes", c.cfg.MaxLineBytes)
	case eventTooLong:
		e.Message = fmt.Sprintf("the AI provider's stream event exceeded %d bytes", c.cfg.maxEventBytes())
	case tooLarge:
		e.Message = fmt.Sprintf("the AI provider's response exceeded %d bytes", c.cfg.MaxResponseBytes)
	case errors.As(err, &pe) && pe.metadata:
		e.Kind, e.Message = domain.Invalid, "the AI provider's baseUrl resolves to a link-local or cloud metadata address, which no AI provider may use"
	case errors.As(err, &pe):
		e.Kind, e.Message = domain.Invalid, "the AI provider's baseUrl resolves to a loopback, private or shared address; the operator must set PARLEY_ALLOW_PRIVATE_UPSTREAMS=true to allow that"
	case status >= 300 && status < 400:
		e.Message = fmt.Sprintf("the AI provider answered with a redirect (HTTP %d), which Parley does not follow (it would send the key elsewhere); set the provider's baseUrl to the address it redirects to", status)
	case status == http.StatusUnauthorized:
		e.Message = fmt.Sprintf("the AI provider rejected its API key (HTTP %d): an owner of its project must replace the provider's apiKey (PATCH /api/v1/ai-providers/{id})", status)
	case status == http.StatusForbidden:
		// Most often the key is good and may not use the model (OpenAI's
		// model_not_found: "Project … does not have access to model …").
		e.Message = withUpstream("the AI provider refused this key access (HTTP 403): check that the provider's account may use the model, "+
			"or replace the provider's apiKey if the message says the key is at fault", upMsg)
	case status == http.StatusTooManyRequests && outOfQuota(err):
		// Not a rate limit: waiting does not end it, so no Retry-After
		// (a 502, which clients do not send again).
		e.Message = withUpstream("the AI provider's account for this key is out of credit or past its spending limit (HTTP 429), "+
			"which waiting does not end: an owner of that account must add credit or raise the limit", upMsg)
	case status == http.StatusTooManyRequests:
		e.Kind, e.RetryAfter = domain.RateLimited, retryAfter(header, upstreamBody(err), time.Now())
		e.Err = fmt.Errorf("%w: %w", domain.ErrUpstreamRateLimited, e.Err)
		wait := seconds(max(e.RetryAfter.Round(time.Second), time.Second))
		e.Message = withUpstream("the AI provider is rate limiting this provider's key (HTTP 429); retry after "+wait, upMsg)
	case status == http.StatusNotFound:
		e.Message = withUpstream("the AI provider answered HTTP 404; check the model name and the provider's baseUrl (an OpenAI-compatible server's usually ends in /v1)", upMsg)
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity:
		// The provider refused the request itself, and would refuse it
		// again as sent: the caller's 400, not a gateway fault, which
		// clients (the OpenAI SDKs among them) send again on their own.
		e.Kind, e.Details = domain.Invalid, map[string]any{"upstreamStatus": status}
		if p := upstreamParam(err); p != "" {
			e.Details["upstreamParam"] = sanitize(p, apiKey, 200)
		}
		code, typ := upstreamCode(err)
		if code != "" {
			e.Details["upstreamCode"] = sanitize(code, apiKey, 100)
		}
		e.Err = fmt.Errorf("%w: %w", domain.ErrUpstreamRefused, e.Err)
		e.Message = withUpstream(fmt.Sprintf("the AI provider refused the request (HTTP %d)", status), upMsg)
		if contextTooLong(code, typ, upMsg) {
			e.Err = fmt.Errorf("%w: %w", domain.ErrContextTooLong, e.Err)
			e.Message += domain.ContextTooLongAdvice
		} else {
			e.Message += "; fix the request (its messages, model or parameters) before sending it again"
		}
	case status >= 400 && status < 500:
		e.Message = withUpstream(fmt.Sprintf("the AI provider refused the request (HTTP %d)", status), upMsg)
	case status >= 500:
		e.Message = withUpstream(fmt.Sprintf("the AI provider failed (HTTP %d)", status), upMsg)
	case inBand:
		e.Message = withUpstream("the AI provider reported an error during the stream", upMsg)
	case errors.As(err, &ne) && ne.Timeout():
		e.Kind = domain.Timeout
		if isDial(err) {
			e.Message = "the AI provider did not answer within " + seconds(c.cfg.ConnectTimeout) + " (connecting); check the provider's baseUrl"
		} else if ex != nil && !ex.stream {
			e.Message = "the AI provider did not answer within " + seconds(c.cfg.ResponseTimeout)
		} else {
			e.Message = "the AI provider did not answer within " + seconds(c.cfg.FirstByteTimeout)
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Message = "the AI provider refused the connection; check the provider's baseUrl"
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		// Parley's own limit, not the provider's failure: the operator's
		// to raise (ulimit -n), and the caller's to retry.
		e.Kind, e.Message = domain.Unavailable, "Parley has too many files and connections open to call the AI provider now; retry later"
	case errors.As(err, &dnsErr):
		e.Message = "the AI provider's host could not be resolved; check the provider's baseUrl"
	case isConnDropped(err):
		if status != 0 {
			e.Message = "the AI provider closed the connection before the reply was complete"
		} else {
			e.Message = "the AI provider closed the connection without answering"
		}
	case errors.Is(err, openai.ErrTooManyEmptyStreamMessages):
		e.Message = fmt.Sprintf("the AI provider sent more than %d stream lines in a row with no data", emptyMessagesLimit)
	case status >= 200 && status < 300:
		e.Message = "the AI provider sent a reply Parley could not read"
	default:
		e.Message = "the call to the AI provider failed"
	}
	return e
}

// causeError is the logged cause of an upstream error: the SDK's error
// text, sanitized and shortened (go-openai puts the whole body in it),
// over the original error for errors.Is and errors.As.
type causeError struct {
	msg string
	err error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.err }

// upstreamMessage returns the upstream's own error message, the HTTP
// status the SDK saw, and whether the error came inside a stream that had
// begun.
func upstreamMessage(err error) (msg string, status int, inBand bool) {
	var oe *openai.APIError
	var re *openai.RequestError
	var ae *anthropic.Error
	switch {
	case errors.As(err, &oe):
		return oe.Message, oe.HTTPStatusCode, oe.HTTPStatusCode == 0
	case errors.As(err, &re):
		return bodyMessage(re.Body), re.HTTPStatusCode, false
	case errors.As(err, &ae):
		return bodyMessage([]byte(ae.RawJSON())), ae.StatusCode, ae.StatusCode < 400
	}
	return "", 0, false
}

// upstreamParam is the request parameter an OpenAI-wire provider's
// refusal names (its error's param: "parallel_tool_calls", "messages"),
// "" when it names none; Anthropic's errors name none.
func upstreamParam(err error) string {
	var oe *openai.APIError
	if errors.As(err, &oe) && oe.Param != nil {
		return *oe.Param
	}
	return ""
}

// quotaCodes are the error codes and types by which OpenAI (and the
// servers that copy it) answer 429 for an account out of credit or past
// its spending limit, which waiting does not end.
var quotaCodes = []string{"insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
	"project_spend_limit_exceeded", "organization_usage_limit_exceeded"}

// outOfQuota reports whether err, a 429, says the account is out of quota
// (quotaCodes), by its code or type.
func outOfQuota(err error) bool {
	code, typ := upstreamCode(err)
	return slices.Contains(quotaCodes, code) || slices.Contains(quotaCodes, typ)
}

// upstreamCode is the code and type an error body gives in OpenAI's shape
// ({"error": {"code", "type"}}, as go-openai read it, or from the body),
// Anthropic's ({"error": {"type"}}) and Gemini's (in a one-element array);
// a numeric code is none.
func upstreamCode(err error) (code, typ string) {
	var oe *openai.APIError
	if errors.As(err, &oe) {
		code, _ = oe.Code.(string)
		return code, oe.Type
	}
	var v struct {
		Error struct {
			Code any    `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(oneOf(upstreamBody(err)), &v) != nil {
		return "", ""
	}
	code, _ = v.Error.Code.(string)
	return code, v.Error.Type
}

// contextWords are what providers' refusals of a request longer than the
// model's context window say: OpenAI's, DeepSeek's and vLLM's "maximum
// context length", Mistral's "too large for model with … maximum context
// length", Anthropic's "prompt is too long" and "input length and
// `max_tokens` exceed context limit", OpenAI's newer "exceeds the context
// window", Gemini's "input token count … exceeds the maximum number of
// tokens allowed". Phrases, not words: a tool named get_context_window
// that a schema error names is no such refusal.
var contextWords = regexp.MustCompile(`(?i)maximum context length|context[ _]length[ _]exceeded|exceeds? (?:\S+ ){0,3}context (?:window|limit)|prompt is too long|input token count.*exceeds`)

// contextTooLong says whether a provider's refusal, by its code, type or
// message, is of a request longer than the model's context window.
func contextTooLong(code, typ, msg string) bool {
	return code == "context_length_exceeded" || typ == "context_length_exceeded" || contextWords.MatchString(msg)
}

// bodyMessage extracts the message of an error body: OpenAI's
// {"error":{"message"}}, Anthropic's {"error":{"type","message"}}, the
// same in a one-element array (Gemini's OpenAI-compatible endpoint),
// Mistral's and older vLLM's {"object":"error","message":…} (a string, or
// FastAPI's {"detail":[{"loc","msg"}]}), or a short plain-text body. HTML
// and long bodies give nothing.
func bodyMessage(body []byte) string {
	body = oneOf(body)
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &v) == nil && len(v.Error) == 0 && len(v.Message) > 0 {
		return topLevelMessage(v.Message)
	}
	if len(v.Error) > 0 {
		var obj struct {
			Message  string `json:"message"`
			Type     string `json:"type"`
			Metadata struct {
				Raw json.RawMessage `json:"raw"`
			} `json:"metadata"`
		}
		if json.Unmarshal(v.Error, &obj) == nil && obj.Message != "" {
			// OpenRouter's message for a provider's failure is only
			// "Provider returned error": the provider's own is its raw.
			if raw := rawMessage(obj.Metadata.Raw); raw != "" && raw != obj.Message {
				return obj.Message + ": " + raw
			}
			return obj.Message
		}
		var s string
		if json.Unmarshal(v.Error, &s) == nil {
			return s
		}
		return ""
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 || strings.HasPrefix(s, "<") || strings.HasPrefix(s, "{") {
		return ""
	}
	return s
}

// oneOf is the element of a body that is a JSON array of one, as
// Gemini's OpenAI-compatible endpoint sends its errors; body otherwise.
func oneOf(body []byte) []byte {
	var list []json.RawMessage
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' && json.Unmarshal(b, &list) == nil && len(list) == 1 {
		return list[0]
	}
	return body
}

// topLevelMessage is the text of an error body's top-level message: a
// string, or FastAPI's validation detail (Mistral's 422s), each item's
// place and text.
func topLevelMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Detail []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		} `json:"detail"`
	}
	if json.Unmarshal(raw, &obj) != nil {
		return ""
	}
	var parts []string
	for _, d := range obj.Detail {
		loc := make([]string, len(d.Loc))
		for i, l := range d.Loc {
			loc[i] = fmt.Sprint(l)
		}
		if len(loc) > 0 {
			parts = append(parts, strings.Join(loc, ".")+": "+d.Msg)
		} else {
			parts = append(parts, d.Msg)
		}
	}
	return strings.Join(parts, "; ")
}

// rawMessage is the message in OpenRouter's error.metadata.raw, the
// provider's own error: a string holding the provider's error body, whose
// message is taken (bodyMessage), or a short text; "" for anything else.
func rawMessage(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	if m := bodyMessage([]byte(s)); m != "" {
		return m
	}
	return ""
}

// retryDelay is how long an error body says to wait: Google's
// google.rpc.RetryInfo ({"error":{"details":[{"retryDelay":"37.512s"}]}}),
// which Gemini sends in place of a Retry-After header; 0 when it says
// nothing. OpenRouter's error.metadata.headers (its X-RateLimit-*) are
// read as its headers would be (see retryAfterHeader).
func retryDelay(body []byte, now time.Time) time.Duration {
	if bytes.Contains(body, []byte(`"metadata"`)) {
		var v struct {
			Error struct {
				Metadata struct {
					Headers map[string]any `json:"headers"`
				} `json:"metadata"`
			} `json:"error"`
		}
		if json.Unmarshal(oneOf(body), &v) == nil && len(v.Error.Metadata.Headers) > 0 {
			h := http.Header{}
			for k, val := range v.Error.Metadata.Headers {
				h.Set(k, fmt.Sprint(val))
			}
			if d := resetWait(h, openRouterLimits, epochWait(now)); d > 0 {
				return d
			}
		}
	}
	if !bytes.Contains(body, []byte(`"retryDelay"`)) {
		return 0
	}
	var v struct {
		Error struct {
			Details []struct {
				RetryDelay string `json:"retryDelay"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(oneOf(body), &v) != nil {
		return 0
	}
	for _, d := range v.Error.Details {
		if w, err := time.ParseDuration(d.RetryDelay); err == nil && w > 0 {
			return w
		}
	}
	return 0
}

// inBandError is the error an upstream reported in the body or the
// stream of a 200 (OpenRouter, which answers 200 at once and reports what
// fails after in the body, with the HTTP status in error.code): when the
// code is a 4xx, an error of that status, its body kept for the wait it
// may give (retryAfter), so that it maps as the status would have (a 429
// rate limited, a 400 the caller's to fix); else an in-band error (see
// upstreamMessage). Either carries the upstream's message.
func inBandError(body []byte) error {
	ae := &openai.APIError{Message: bodyMessage(body)}
	var v struct {
		Error struct {
			Code json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(oneOf(body), &v) == nil {
		if code, err := strconv.Atoi(strings.Trim(string(v.Error.Code), `"`)); err == nil && code >= 400 && code < 500 {
			ae.HTTPStatusCode = code
			return &openai.RequestError{HTTPStatusCode: code, Body: body, Err: ae}
		}
	}
	return fmt.Errorf("error, %w", ae)
}

// inBandStatus is the status an inBandError names, 0 for none.
func inBandStatus(err error) int {
	var re *openai.RequestError
	if errors.As(err, &re) {
		return re.HTTPStatusCode
	}
	return 0
}

// upstreamBody is the error body an SDK's error kept, nil when it kept
// none.
func upstreamBody(err error) []byte {
	var re *openai.RequestError
	var ae *anthropic.Error
	switch {
	case errors.As(err, &re):
		return re.Body
	case errors.As(err, &ae):
		return []byte(ae.RawJSON())
	}
	return nil
}

// secretLike matches what looks like a credential: provider keys, bearer
// tokens and key=value pairs; longToken, a long run of a token's
// characters, which is redacted when it holds a digit, as random tokens
// do, and not a URL's path or words joined by dashes
// (platform.openai.com/docs/guides/error-codes).
var (
	secretLike = regexp.MustCompile(`(?i)(\bsk-[a-z0-9_\-]{4,}[a-z0-9_\-*.]*|bearer\s+[^\s"',;)\]}>\[][^\s"',;)\]}>]*|(api[-_]?key|token|secret|password)["']?\s*[:=]\s*["']?[^\s"',]+)`)
	longToken  = regexp.MustCompile(`(?i)[a-z0-9_\-+/=]{32,}`)
)

// sanitize makes an upstream text safe to show: the key and anything that
// looks like one redacted, control characters and runs of spaces folded,
// at most max runes.
func sanitize(s, apiKey string, max int) string {
	// The key first, in the whole text: a cut through it would leave a
	// fragment no search for the key finds.
	if apiKey != "" {
		s = strings.ReplaceAll(s, apiKey, "[redacted]")
	}
	if limit := 8 * max; len(s) > limit {
		// Cut long texts (an SDK error may hold a whole body) before the
		// regexp, dropping the token the cut splits (up to the last space
		// or control character, which the folding below takes for one) so
		// that no fragment of another credential survives.
		s = strings.ToValidUTF8(s[:limit], "")
		if i := strings.LastIndexFunc(s, separates); i > 0 {
			s = s[:i]
		} else {
			s = ""
		}
	}
	s = secretLike.ReplaceAllString(s, "[redacted]")
	s = longToken.ReplaceAllStringFunc(s, func(m string) string {
		if !strings.ContainsAny(m, "0123456789") {
			return m
		}
		return "[redacted]"
	})
	s = strings.Join(strings.FieldsFunc(s, separates), " ")
	if r := []rune(s); len(r) > max {
		s = strings.TrimSpace(string(r[:max])) + "…"
	}
	return s
}

// separates reports whether r is a space or a control character, which
// sanitize folds into one space: what ends a token.
func separates(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// holdsKey reports whether name, one an upstream gave (a model's),
// holds apiKey, the key it was called with: such a name is not taken, as
// it would go into metrics labels, usage reports and model lists. A key
// under 8 characters (a local server's placeholder, "ollama") is no
// secret, and may be part of a model's name.
func holdsKey(name, apiKey string) bool {
	return len(apiKey) >= 8 && strings.Contains(name, apiKey)
}

// upstreamModel is the model name an upstream answered with, "" (so the
// model asked for stands) when it holds apiKey.
func upstreamModel(name, apiKey string) string {
	if holdsKey(name, apiKey) {
		return ""
	}
	return name
}

func withUpstream(msg, upstream string) string {
	if upstream == "" {
		return msg
	}
	return msg + ": " + upstream
}

// DefaultRetryAfter is the wait a 429 says when its headers give none
// Parley can use: a rate-limited caller always learns when to come back.
const DefaultRetryAfter = time.Second

// MaxRetryAfter caps the wait read from a 429's headers, so that a broken
// header cannot say "retry in a year".
const MaxRetryAfter = time.Hour

// retryAfter reads how long to wait from a 429's headers, the first of
// these that gives a positive wait: retry-after-ms (OpenAI); Retry-After,
// in seconds or as an HTTP date; OpenAI's x-ratelimit-reset-requests and
// -tokens ("1s", "6m0s", "20ms"); Anthropic's anthropic-ratelimit-*-reset
// (RFC 3339 times); OpenRouter's X-RateLimit-Reset (a unix time in
// milliseconds). Of the reset headers of one provider it takes the
// latest of the limits whose remaining count is 0, else the latest of
// all; else what the body says (retryDelay: Gemini's, OpenRouter's). Without any it is
// DefaultRetryAfter; it is never more than MaxRetryAfter.
func retryAfter(h http.Header, body []byte, now time.Time) time.Duration {
	d := retryAfterHeader(h, now)
	if d <= 0 {
		d = retryDelay(body, now)
	}
	if d <= 0 {
		d = DefaultRetryAfter
	}
	return min(d, MaxRetryAfter)
}

func retryAfterHeader(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return floatDuration(ms, time.Millisecond)
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil {
			if secs > 0 {
				return floatDuration(secs, time.Second)
			}
		} else if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	if d := resetWait(h, openAILimits, func(v string) time.Duration {
		d, _ := time.ParseDuration(v)
		return d
	}); d > 0 {
		return d
	}
	if d := resetWait(h, anthropicLimits, func(v string) time.Duration {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.Sub(now)
		}
		return 0
	}); d > 0 {
		return d
	}
	return resetWait(h, openRouterLimits, epochWait(now))
}

// epochWait turns a reset given as a unix time, in milliseconds
// (OpenRouter's X-RateLimit-Reset) or seconds, into the wait until then
// from now; 0 for anything else, a count of seconds among them (too
// small to be a time).
func epochWait(now time.Time) func(string) time.Duration {
	return func(v string) time.Duration {
		n, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil:
			return 0
		case n > 1e12:
			return time.UnixMilli(int64(n)).Sub(now)
		case n > 1e9:
			return time.Unix(int64(n), 0).Sub(now)
		}
		return 0
	}
}

// floatDuration is v units, saturated rather than overflowing.
func floatDuration(v float64, unit time.Duration) time.Duration {
	if d := v * float64(unit); d < float64(MaxRetryAfter) {
		return time.Duration(d)
	}
	return MaxRetryAfter
}

// rateLimit names the headers of one of a provider's limits: when it
// resets and how much of it remains.
type rateLimit struct{ reset, remaining string }

var openAILimits = []rateLimit{
	{"X-Ratelimit-Reset-Requests", "X-Ratelimit-Remaining-Requests"},
	{"X-Ratelimit-Reset-Tokens", "X-Ratelimit-Remaining-Tokens"},
}

// openRouterLimits is OpenRouter's one limit header pair, its reset a
// unix time in milliseconds (epochWait).
var openRouterLimits = []rateLimit{{"X-Ratelimit-Reset", "X-Ratelimit-Remaining"}}

var anthropicLimits = []rateLimit{
	{"Anthropic-Ratelimit-Requests-Reset", "Anthropic-Ratelimit-Requests-Remaining"},
	{"Anthropic-Ratelimit-Tokens-Reset", "Anthropic-Ratelimit-Tokens-Remaining"},
	{"Anthropic-Ratelimit-Input-Tokens-Reset", "Anthropic-Ratelimit-Input-Tokens-Remaining"},
	{"Anthropic-Ratelimit-Output-Tokens-Reset", "Anthropic-Ratelimit-Output-Tokens-Remaining"},
}

// resetWait is the wait until the latest reset of the limits that are
// used up (remaining 0), else of all the limits; parse turns a reset
// header into a wait, 0 when it cannot.
func resetWait(h http.Header, limits []rateLimit, parse func(string) time.Duration) time.Duration {
	var exhausted, latest time.Duration
	for _, l := range limits {
		v := strings.TrimSpace(h.Get(l.reset))
		if v == "" {
			continue
		}
		d := parse(v)
		if d <= 0 {
			continue
		}
		latest = max(latest, d)
		if n, err := strconv.ParseFloat(strings.TrimSpace(h.Get(l.remaining)), 64); err == nil && n <= 0 {
			exhausted = max(exhausted, d)
		}
	}
	if exhausted > 0 {
		return exhausted
	}
	return latest
}

func isDial(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// seconds formats a timeout for a message: "60s", "1.5s", "200ms".
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return d.String()
}

func quote(s string) string { return strconv.Quote(s) }
