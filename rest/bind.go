package rest

import (
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/slowclient"
	"github.com/parleyhq/parley/internal/wire"
)

// bind decodes the request body into v strictly: exact (case-sensitive)
// field names, no unknown fields, no duplicate keys, no second value, and
// the right types. Errors name the offending field.
func (s *Server) bind(c *echo.Context, v any) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	return wire.Unmarshal(body, v, "field")
}

// bindUpdate is bind for an update (PATCH), whose fields left out keep
// their values: a field sent as null, which would decode as left out, is
// refused rather than ignored.
func (s *Server) bindUpdate(c *echo.Context, v any) error {
	return s.bindWithoutNulls(c, v, "leave it out to keep its value, or send a value to change it")
}

// bindWithoutNulls is bind refusing a field sent as null, which would
// decode as left out: for an update (bindUpdate), and for a replacement
// (PUT), whose fields left out take their defaults. fix says what to send
// instead.
func (s *Server) bindWithoutNulls(c *echo.Context, v any, fix string, nullable ...string) error {
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	if err := wire.Unmarshal(body, v, "field"); err != nil {
		return err
	}
	return wire.RejectNulls(body, "field", fix, nullable...)
}

// readBody reads a JSON request body, within the body limit and the
// request timeout.
func (s *Server) readBody(c *echo.Context) ([]byte, error) {
	r := c.Request()
	if ct := r.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != echo.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
			return nil, domain.Errorf(domain.Invalid, "Content-Type must be application/json")
		}
	}
	if err := wire.Uncompressed(r.Header.Get("Content-Encoding")); err != nil {
		return nil, err
	}
	body, err := slowclient.ReadBody(netWriter(c), r.Body, s.cfg.RequestTimeout)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, domain.Errorf(domain.TooLarge, "%s", wire.BodyTooLarge(0, mbe.Limit))
		}
		if errors.Is(err, slowclient.ErrBodyTimeout) {
			return nil, domain.Errorf(domain.Invalid, "%s", slowclient.BodyTimeoutMessage(s.cfg.RequestTimeout))
		}
		return nil, domain.Errorf(domain.Invalid, "the request body could not be read")
	}
	switch strings.TrimSpace(string(body)) {
	case "":
		return nil, domain.Errorf(domain.Invalid, "the request body is empty; send a JSON object")
	case "null":
		// Decoded, null leaves every field out: a PATCH would change
		// nothing without a word, and a PUT of limits lift them all.
		return nil, domain.Errorf(domain.Invalid, "the fields must be a JSON object; the body is null")
	}
	return body, nil
}
