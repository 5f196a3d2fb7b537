package rest

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// bind decodes the request body into v strictly: exact (case-sensitive)
// field names, no unknown fields, no duplicate keys, no second value, and
// the right types. Errors name the offending field.
func (s *Server) bind(c echo.Context, v any) error {
	r := c.Request()
	if ct := r.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != echo.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
			return domain.Errorf(domain.Invalid, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return domain.Errorf(domain.TooLarge, "request body is over the %d-byte limit", mbe.Limit)
		}
		return domain.Errorf(domain.Invalid, "the request body could not be read")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return domain.Errorf(domain.Invalid, "the request body is empty; send a JSON object")
	}
	return wire.Unmarshal(body, v, "field")
}
