package mcp

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
)

// decodeArgs decodes a tool call's arguments into v strictly, as REST
// decodes bodies: exact (case-sensitive) names, no unknown or duplicate
// fields, the right types, and every required field present. Errors are
// Invalid and name the field.
func decodeArgs(req mcpgo.CallToolRequest, v any) error {
	raw := []byte(req.Params.RawArguments)
	if len(raw) == 0 && req.Params.Arguments != nil {
		if r, ok := req.Params.Arguments.(stdjson.RawMessage); ok {
			raw = r
		} else {
			var err error
			if raw, err = stdjson.Marshal(req.Params.Arguments); err != nil {
				return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
			}
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
	}
	if err := json.Unmarshal(raw, v, json.RejectUnknownMembers(true)); err != nil {
		return decodeError(err)
	}
	var present map[string]jsontext.Value
	if err := json.Unmarshal(raw, &present); err != nil {
		return decodeError(err)
	}
	for _, name := range requiredFields(reflect.TypeOf(v).Elem()) {
		if _, ok := present[name]; !ok {
			return domain.Invalidf(name, "%s is required", name)
		}
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
			return domain.Invalidf(field, "unknown argument %q; argument names are camelCase and case-sensitive (see the tool's input schema)", field)
		case field != "":
			want := "of a different type"
			if se.GoType != nil {
				want = typeName(se.GoType)
			}
			return domain.Invalidf(field, "%s must be %s", field, want)
		}
		return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := pointerToField(syn.JSONPointer)
		if strings.Contains(syn.Err.Error(), "duplicate") {
			return domain.Invalidf(field, "argument %q appears more than once", field)
		}
		return domain.Invalidf(field, "the arguments are not valid JSON: %s", syn.Err.Error())
	}
	return domain.Errorf(domain.Invalid, "the arguments are not valid JSON")
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

func typeName(t reflect.Type) string {
	if t.Implements(describerType) || reflect.PointerTo(t).Implements(describerType) {
		return "a string or an array of strings"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// page validates the limit and cursor arguments of a list tool with the
// same rules as REST's query parameters.
func page(limit *int, cursor string) (domain.Page, error) {
	l := ""
	if limit != nil {
		l = strconv.Itoa(*limit)
	}
	return domain.ParsePage(l, cursor)
}

// parseTime reads an optional ISO 8601 time or date argument.
func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, domain.Invalidf(field, "%s must be an ISO 8601 time such as 2026-01-31T00:00:00Z or a date such as 2026-01-31", field)
}

// timestamp formats t as ISO 8601 UTC with milliseconds, as REST does.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// stopList is OpenAI's stop: a string or an array of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

func (stopList) jsonSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string"},
		map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "maxItems": 4},
	}}
}
