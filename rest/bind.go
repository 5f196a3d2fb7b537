package rest

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/parleyhq/parley/domain"
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
	if err := json.Unmarshal(body, v, json.RejectUnknownMembers(true)); err != nil {
		return decodeError(err)
	}
	return nil
}

// decodeError turns a JSON decoding error into an Invalid error naming the
// field it concerns.
func decodeError(err error) error {
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := pointerToField(se.JSONPointer)
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return domain.Invalidf(field, "unknown field %q; field names are camelCase and case-sensitive", field)
		case field != "":
			want := "a different type"
			if se.GoType != nil {
				want = typeName(se.GoType.String())
			}
			return domain.Invalidf(field, "field %q must be %s", field, want)
		}
		return domain.Errorf(domain.Invalid, "the request body must be a JSON object")
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := pointerToField(syn.JSONPointer)
		msg := syn.Err.Error()
		if strings.Contains(msg, "duplicate") {
			return domain.Invalidf(field, "field %q appears more than once", field)
		}
		if strings.Contains(msg, "after top-level value") {
			return domain.Errorf(domain.Invalid, "the request body must hold exactly one JSON value")
		}
		return domain.Invalidf(field, "the request body is not valid JSON (at byte %d): %s", syn.ByteOffset, msg)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return domain.Errorf(domain.Invalid, "the request body is truncated JSON")
	}
	return domain.Errorf(domain.Invalid, "the request body is not valid JSON")
}

// pointerToField renders a JSON pointer as a field path: /messages/0/role → messages[0].role.
func pointerToField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func typeName(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.HasSuffix(goType, "stopList"):
		return "a string or an array of strings"
	}
	return "an object"
}
