package wire

import (
	"net/http"
	"strconv"

	"github.com/parleyhq/parley/domain"
)

// statuses is the one table from domain error kinds to HTTP statuses, for
// the REST API's answers and MCP's refusals over HTTP alike.
var statuses = map[domain.Kind]int{
	domain.Internal:        http.StatusInternalServerError,
	domain.Invalid:         http.StatusBadRequest,
	domain.NotFound:        http.StatusNotFound,
	domain.Conflict:        http.StatusConflict,
	domain.Unauthenticated: http.StatusUnauthorized,
	domain.Forbidden:       http.StatusForbidden,
	domain.RateLimited:     http.StatusTooManyRequests,
	domain.TooLarge:        http.StatusRequestEntityTooLarge,
	domain.Unavailable:     http.StatusServiceUnavailable,
	domain.Upstream:        http.StatusBadGateway,
	domain.Timeout:         http.StatusGatewayTimeout,
	domain.Canceled:        499, // the client is gone; nobody reads this
}

// Status is the HTTP status of an error of kind k: 500 for a kind the
// table does not know.
func Status(k domain.Kind) int {
	if s, ok := statuses[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// BodyTooLarge is the message of a 413 for a request body over limit
// bytes (0: not known), of size bytes when it said so (0: it did not, or
// was cut off), on REST and MCP over HTTP alike.
func BodyTooLarge(size, limit int64) string {
	msg := "the request body is too large"
	switch {
	case limit > 0 && size > limit:
		msg = "the request body is " + strconv.FormatInt(size, 10) + " bytes, over the " + strconv.FormatInt(limit, 10) + "-byte limit"
	case limit > 0:
		msg = "the request body is over the " + strconv.FormatInt(limit, 10) + "-byte limit"
	}
	return msg + "; send a smaller one (the server's PARLEY_MAX_BODY_BYTES sets the limit)"
}
