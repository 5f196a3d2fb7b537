package wire

import (
	"net/http"

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
