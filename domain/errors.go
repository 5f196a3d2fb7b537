package domain

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// Kind classifies an error so that each adapter (REST, MCP) can map it once.
// Internal is the zero value: an error without a kind is a server fault.
type Kind uint8

const (
	Internal        Kind = iota // a fault of ours; the message is not shown
	Invalid                     // the request is malformed or breaks a rule
	NotFound                    // the resource does not exist or the caller may not know it does
	Conflict                    // the request conflicts with the current state
	Unauthenticated             // no valid credentials
	Forbidden                   // the caller may see the resource but not do this
	RateLimited                 // a limit was hit; RetryAfter says when to come back
	TooLarge                    // the request body or a field is over its limit
	Unavailable                 // a dependency is down or the server is shutting down
	Upstream                    // the AI provider failed or rejected the call
	Timeout                     // the AI provider did not answer in time
	Canceled                    // the caller went away
)

var kindNames = [...]string{
	Internal:        "internal",
	Invalid:         "invalid_request",
	NotFound:        "not_found",
	Conflict:        "conflict",
	Unauthenticated: "unauthenticated",
	Forbidden:       "forbidden",
	RateLimited:     "rate_limited",
	TooLarge:        "payload_too_large",
	Unavailable:     "unavailable",
	Upstream:        "upstream_error",
	Timeout:         "upstream_timeout",
	Canceled:        "canceled",
}

// String returns the kind's wire code, as used in the REST error envelope
// and at the start of MCP tool error texts.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// ErrShuttingDown is the cause with which the server cancels what is still
// running when the shutdown grace period is over; REST streams then end
// with an error event and MCP calls with an error result, not silently.
var ErrShuttingDown = errors.New("the server is shutting down")

// LogLevel is the level a failed request or tool call is logged at, the one
// rule of REST and MCP alike, for a JSON response as for a stream that
// failed once it began: a warning for the server's shutdown (expected at
// every deploy whose grace period a request outlives) and for a provider
// that refused its key, failed, did not answer or is rate limiting its key
// (the operator's to know of: the key's quota may be spent); an error for
// Parley's own faults (Internal, and Unavailable: a database that is down
// or does not answer); debug for what the caller must fix, for Parley's
// own limits, and for a caller that left.
func LogLevel(err error) slog.Level {
	switch kind := KindOf(err); {
	case errors.Is(err, ErrShuttingDown), kind == Upstream, kind == Timeout, errors.Is(err, ErrUpstreamRateLimited):
		return slog.LevelWarn
	case kind == Internal, kind == Unavailable:
		return slog.LevelError
	}
	return slog.LevelDebug
}

// ErrTruncated is the cause of the Upstream error of a reply the provider
// ended without saying why (no finish reason): a stream cut off cleanly.
// Such a completion is recorded with the outcome truncated.
var ErrTruncated = errors.New("the AI provider ended the reply without a finish reason")

// ErrUpstreamRateLimited is within the cause of the RateLimited error of a
// completion the AI provider refused with a 429: its key's limits, not
// Parley's.
var ErrUpstreamRateLimited = errors.New("the AI provider is rate limiting its key")

// ErrUpstreamRefused is the cause of the Invalid error of a request the AI
// provider refused as malformed (HTTP 400, 413 or 422): the caller must
// change it, so it is theirs to fix; such a completion is recorded with
// the outcome upstream_refused.
var ErrUpstreamRefused = errors.New("the AI provider refused the request")

// ErrContextTooLong is within the cause of the Invalid error of a request
// the AI provider refused as longer than its model's context window. Its
// message ends with ContextTooLongAdvice; one whose request sent a
// conversation's history or documents says so instead (contextAdvice).
var ErrContextTooLong = errors.New("the request is longer than the model's context window")

// ContextTooLongAdvice ends the message of an ErrContextTooLong refusal.
const ContextTooLongAdvice = "; the messages, with maxTokens for the reply, are longer than the model's context window: " +
	"send fewer or shorter ones, a smaller maxTokens, or use a model with a larger window"

// contextAdvice says, of an ErrContextTooLong refusal, what beside the
// request's messages made it long, that the caller can change: a
// continuation's history (maxHistoryMessages sends less of it) and the
// documents named as context.
func (pl *plan) contextAdvice(err error) error {
	var e *Error
	if !errors.Is(err, ErrContextTooLong) || !errors.As(err, &e) || !strings.HasSuffix(e.Message, ContextTooLongAdvice) ||
		len(pl.window) == 0 && len(pl.sources) == 0 {
		return err
	}
	what, do := []string{"the new messages"}, []string(nil)
	if len(pl.window) > 0 {
		sent := len(pl.window)
		if pl.window[0].ID == "" { // HistoryCutNote, not a stored message
			sent--
		}
		what = append([]string{fmt.Sprintf("the history sent (%d of the conversation's %d messages)", sent, len(pl.history))}, what...)
		do = append(do, fmt.Sprintf("send fewer of its latest messages (maxHistoryMessages; it holds %d)", len(pl.history)),
			"start a new conversation (leave out conversationId)")
	}
	if len(pl.sources) > 0 {
		n := 0
		for _, d := range pl.sources {
			n += len(d.Content)
		}
		what = append(what, fmt.Sprintf("the documents named as context (%d, %d bytes)", len(pl.sources), n))
		do = append(do, "name fewer documents (dataSources, names)")
	}
	c := *e
	c.Message = strings.TrimSuffix(e.Message, ContextTooLongAdvice) + "; " + strings.Join(what, ", ") +
		", with maxTokens for the reply, are longer than the model's context window: " +
		strings.Join(append(do, "send a smaller maxTokens, or use a model with a larger window"), ", ")
	return &c
}

// ErrNoWrites is within the cause of the Unavailable error of a write the
// database could not take for a reason of its own rather than the
// write's: it is unreachable, out of disk or read-only. Completions stop
// sending per-chat completions upstream for a while after a turn failed
// so (Completions.StoringRefused).
var ErrNoWrites = errors.New("the database takes no writes")

// ErrUnreachable is within the cause of an ErrNoWrites error of a database
// out of reach (down, or dropping connections), rather than one that
// answers but refuses the write (out of disk, read-only): any write that
// then succeeds says it is back.
var ErrUnreachable = errors.New("the database is unreachable")

// ErrStale is the cause of the Conflict a store returns when asked to
// update a row whose updatedAt is no longer the one the update was based on:
// another write (on this instance or another) came first. The services then
// read the row again and apply the request to what it holds now.
var ErrStale = errors.New("the row changed since it was read")

// StaleUpdate is the error of a store update that found what/id changed
// since it was read (see ErrStale).
func StaleUpdate(what, id string) *Error {
	return &Error{Kind: Conflict, Message: fmt.Sprintf("%s %s was changed by another request meanwhile; retry", what, id), Err: ErrStale}
}

// updateAttempts bounds how often an update is applied again to a row that
// other writes keep changing under it.
const updateAttempts = 5

// untilFresh runs update, a read-change-write of one row, again while its
// write finds the row changed since its read (ErrStale), up to
// updateAttempts times: an update then changes only the fields it was
// given, on top of whatever another request or instance wrote meanwhile.
func untilFresh[T any](update func() (*T, error)) (*T, error) {
	for attempt := 1; ; attempt++ {
		v, err := update()
		if !errors.Is(err, ErrStale) || attempt == updateAttempts {
			return v, err
		}
	}
}

// Error is Parley's one error type. Message is safe to show to a user or a
// model; Err is the cause, which is only logged.
type Error struct {
	Kind    Kind
	Op      string         // the operation, e.g. "chats.Create"
	Message string         // what went wrong and how to fix it
	Details map[string]any // optional structured details (field names, limits)
	// RetryAfter is set on RateLimited errors when the caller should wait.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Kind.String()
	}
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted, user-safe message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Invalidf returns an Invalid error whose details name the offending field.
func Invalidf(field, format string, args ...any) *Error {
	e := Errorf(Invalid, format, args...)
	if field != "" {
		e.Details = map[string]any{"field": field}
	}
	return e
}

// NotFoundf returns the NotFound error for a resource: "chat cht_x does not exist".
func NotFoundf(what, id string) *Error {
	return Errorf(NotFound, "%s %s does not exist", what, id)
}

// Wrap returns err with op attached. An *Error keeps its kind and message;
// any other error becomes Internal with err as its hidden cause.
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Op == "" {
			c := *e
			c.Op = op
			return &c
		}
		return err
	}
	return &Error{Kind: Internal, Op: op, Err: err}
}

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// MessageOf returns the user-safe message of err. Internal errors never
// reveal their cause.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal && e.Message != "" {
		return e.Message
	}
	switch KindOf(err) {
	case Internal:
		return "an internal error occurred; it has been logged"
	default:
		return KindOf(err).String()
	}
}

// DetailsOf returns the structured details of err, if any.
func DetailsOf(err error) map[string]any {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal {
		return e.Details
	}
	return nil
}

// RetryAfterOf returns how long a rate-limited caller should wait, if known.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// RetryAfterSeconds is RetryAfterOf in whole seconds, rounded up: a client
// that waits as long as it is told is not refused again. 0 when err says
// nothing of when to retry.
func RetryAfterSeconds(err error) int {
	return int(math.Ceil(RetryAfterOf(err).Seconds()))
}
