package rest

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/internal/wire"
)

// errorBody is the one error envelope of the REST API.
type errorBody struct {
	Error errorDetail `json:"error"`
}

// errorDetail's Debug sits inside it, not beside it: the OpenAI SDKs
// give their caller only the body's error object (err.error in Node).
type errorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
	Debug   *wire.Debug    `json:"debug,omitempty" desc:"What went upstream: only for a completion that failed once it ran (the AI provider failed or refused it, or its turn was not stored), when its request had debug: true."`
}

// toErrorBody is err's envelope. An error with a wait (a rate limit,
// Parley's or the provider's) has it in details.retryAfterSeconds too, as
// Retry-After says: a stream's error event, whose headers went long
// before, has no other place for it.
func toErrorBody(err error) errorBody {
	details := domain.DetailsOf(err)
	if secs := domain.RetryAfterSeconds(err); secs > 0 {
		details = maps.Clone(details)
		if details == nil {
			details = map[string]any{}
		}
		details["retryAfterSeconds"] = secs
	}
	return errorBody{Error: errorDetail{
		Code:    domain.KindOf(err).String(),
		Message: domain.MessageOf(err),
		Details: details,
		Debug:   wire.DebugOf(domain.DebugOf(err)),
	}}
}

// echoErrors are Echo's errors for the statuses fromEchoError maps: the
// router answers an unknown route and a wrong method with the first two,
// which wholeSegments and shadowedStatic return too. In Echo v5 they are
// sentinels that carry a status (echo.HTTPStatusCoder) but are not
// *echo.HTTPError.
var echoErrors = []error{echo.ErrNotFound, echo.ErrMethodNotAllowed, echo.ErrStatusRequestEntityTooLarge, echo.ErrUnauthorized}

// echoStatus returns the status of an error of Echo's own in err's chain, 0
// when there is none. It does not look for any error with a StatusCode
// method (echo.StatusCode does): a cause from elsewhere that has one is
// not Echo's refusal.
func echoStatus(err error) int {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	for _, e := range echoErrors {
		if errors.Is(err, e) {
			return echo.StatusCode(e)
		}
	}
	return 0
}

// fromEchoError turns Echo's own errors (unknown route, wrong method, body
// limit) into domain errors, so they take the same path as ours.
func fromEchoError(code int, err error, path string) error {
	switch code {
	case http.StatusNotFound:
		if strings.HasPrefix(path, "/api/v1/") && strings.HasSuffix(path, "/responses") {
			// The AI SDK's createOpenAI(…)(model), and LangChain with some
			// models or options, post to OpenAI's Responses API.
			return domain.Errorf(domain.NotFound, "Parley speaks OpenAI's Chat Completions API, not its Responses API: "+
				"post to {baseURL}/chat/completions (the AI SDK's openai.chat(model) or @ai-sdk/openai-compatible; "+
				"LangChain's ChatOpenAI without useResponsesApi or reasoning options)")
		}
		if len(path) > 1 && strings.HasSuffix(path, "/") {
			return domain.Errorf(domain.NotFound, "no such endpoint: paths end without a slash (%s); see /openapi.json for the API",
				strings.TrimRight(path, "/"))
		}
		return domain.Errorf(domain.NotFound, "no such endpoint; see /openapi.json for the API")
	case http.StatusMethodNotAllowed:
		return domain.Errorf(domain.Invalid, "this endpoint does not take that method; the Allow header lists those it does")
	case http.StatusRequestEntityTooLarge:
		return domain.Errorf(domain.TooLarge, "%s", wire.BodyTooLarge(0, 0))
	case http.StatusUnauthorized:
		return domain.Errorf(domain.Unauthenticated, "authentication required: send an API key as 'Authorization: Bearer <key>'")
	}
	return &domain.Error{Kind: domain.Internal, Err: err}
}

// handleError writes err in the envelope with the status of its kind,
// and logs it at domain.LogLevel's level with the cause: what the caller
// must fix at debug, a provider's failure, a timeout and the shutdown at
// warn, Parley's own faults at error.
func (s *Server) handleError(c *echo.Context, err error) {
	if r := response(c); r != nil && r.Committed {
		return
	}
	code := echoStatus(err)
	if code != 0 {
		err = fromEchoError(code, err, c.Request().URL.Path)
	}
	if domain.KindOf(err) == domain.Canceled && errors.Is(context.Cause(c.Request().Context()), domain.ErrShuttingDown) {
		// Not the client's cancellation (its 499 would tell it not to send
		// again), but the server's, as a completion it ends says.
		e := domain.Errorf(domain.Unavailable, "the server is shutting down and ended this request; send it again")
		e.Err = domain.ErrShuttingDown
		err = e
	}
	kind := domain.KindOf(err)
	status, body := wire.Status(kind), toErrorBody(err)
	if code == http.StatusMethodNotAllowed {
		// HTTP's own refusal, for which no domain kind stands.
		status, body.Error.Code = http.StatusMethodNotAllowed, "method_not_allowed"
	}
	// The attributes go with each record, not on a logger (With): those
	// would come before the request_id that requestid.LogHandler puts first.
	attrs := []any{"method", logMethod(c.Request().Method), "path", route(c), "kind", kind.String(),
		"err", requestid.CappedError(err)}
	level, msg := domain.LogLevel(err), "request refused"
	switch {
	case errors.Is(err, domain.ErrShuttingDown):
		msg = "request ended by shutdown"
	case kind == domain.Upstream || kind == domain.Timeout || errors.Is(err, domain.ErrUpstreamRateLimited):
		msg = "upstream failed"
	case level == slog.LevelError:
		msg = "request failed"
	}
	s.log.Log(ctx(c), level, msg, attrs...)
	h := c.Response().Header()
	if kind == domain.Unauthenticated {
		h.Set("WWW-Authenticate", wire.Challenge(c.Request().Header)) // as MCP over HTTP answers
	}
	if secs := domain.RetryAfterSeconds(err); secs > 0 {
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	if kind == domain.Upstream {
		// The provider failed, and Parley has retried what retrying can
		// mend (a 5xx, a reset, a refused connection before the first
		// byte), or it cannot be (a rejected key, an unknown model): the
		// OpenAI SDKs, which retry a 502 twice on their own, read this
		// header first, and do not multiply the provider's calls (and
		// its bill) by three.
		h.Set("X-Should-Retry", "false")
	}
	if kind == domain.RateLimited {
		if q, ok := domain.RefusedQuota(err); ok {
			setLimitHeaders(h, q)
			h.Set("RateLimit-Policy", string(appendPolicy(nil, q)))
		} // else the upstream's 429: only its Retry-After is known
	} else {
		// A completion that failed after its limits admitted it was
		// counted: it says what is left, as a success does.
		setQuotaHeaders(h, domain.QuotasOf(err))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	if werr := c.JSON(status, body); werr != nil {
		s.log.DebugContext(ctx(c), "writing error response", "method", c.Request().Method, "path", route(c), "err", werr)
	}
}
