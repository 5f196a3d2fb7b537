// Package wire holds what the REST API and the MCP tools share on the
// wire: strict JSON decoding whose errors name the field, with bounds on a
// body's values and arrays before it is decoded (Bounded); the completion
// request's fields and the debug object (completion.go); OpenAI's stop (a
// string or a list) and the ISO 8601 time formats; the one table from
// domain error kinds to HTTP statuses (status.go); the bearer key and the
// 401's challenge (auth.go); and which browser origins may call
// (origin.go). The rules of the resources themselves live in domain.
package wire

import (
	"bytes"
	"cmp"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/parleyhq/parley/domain"
)

// Unmarshal decodes data into v strictly: exact (case-sensitive) names, no
// unknown or duplicate members, no second value, and the right types.
// Errors are domain Invalid errors naming the offending member; noun says
// what members are called to the reader ("field", "argument").
func Unmarshal(data []byte, v any, noun string) error {
	if err := Bounded(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v, json.RejectUnknownMembers(true), json.WithUnmarshalers(integral)); err != nil {
		return decodeError(err, noun)
	}
	return nil
}

// RejectNulls refuses a null member of the object data, which Unmarshal
// has accepted and decoded as left out: for an update, whose members left
// out keep their values, it would change nothing without a word; for a
// replacement, set a default nobody asked for. The first null member is
// named, and fix says what to send instead. The members named in nullable
// may be null: fields a request takes only to ignore them.
func RejectNulls(data []byte, noun, fix string, nullable ...string) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil // not an object: Unmarshal said so already
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil
		}
		field := tok.String() // before the decoder moves on: tok is valid until then
		if dec.PeekKind() == 'n' && !slices.Contains(nullable, field) {
			return domain.Invalidf(field, "%s %q cannot be null; %s", noun, field, fix)
		}
		if err := dec.SkipValue(); err != nil {
			return nil
		}
	}
	return nil
}

// integral decodes an int from any JSON number with an integer value, as
// JSON Schema counts them: 5.0 and 1e3 too, which a client in a language
// with one number type may well send. A fraction, or an integer past
// Go's int, stays an error.
var integral = json.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *int) error {
	if dec.PeekKind() != '0' {
		return errors.ErrUnsupported // not a number: the usual type error
	}
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	if n, err := strconv.ParseInt(string(raw), 10, strconv.IntSize); err == nil {
		*v = int(n)
		return nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || f != math.Trunc(f) {
		return errNotAnInt
	}
	if f < math.MinInt || f >= math.MaxInt {
		return errIntRange
	}
	if mantissa, _, _ := strings.Cut(strings.ToLower(string(raw)), "e"); f == 0 && strings.ContainsAny(mantissa, "123456789") {
		return errNotAnInt // 1e-400, which ParseFloat takes to 0 without a word
	}
	*v = int(f)
	return nil
})

var (
	errNotAnInt = errors.New("not an integer")
	errIntRange = errors.New("an integer past 64 bits")
)

func decodeError(err error, noun string) error {
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := FieldPath(se.JSONPointer)
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return domain.Invalidf(field, "unknown %s %q; %s", noun, field, knownNames(se.GoType, se.JSONPointer.LastToken(), noun))
		case field != "" && errors.As(se.Err, new(*partError)):
			var pe *partError
			errors.As(se.Err, &pe)
			field = fmt.Sprintf("%s[%d]", field, pe.index)
			return domain.Invalidf(field, "%s %s", field, pe.msg)
		case field != "" && errors.Is(se.Err, errIntRange):
			// Not "must be from … to …": the field's own range, which
			// the domain checks once decoded, is often narrower.
			return domain.Invalidf(field, "%s is past the range of a 64-bit integer (%d to %d); send one within the field's own range", field, math.MinInt64, math.MaxInt64)
		case field != "":
			want := "of a different type"
			if se.GoType != nil {
				want = typeName(se.GoType)
			}
			return domain.Invalidf(field, "%s must be %s", field, want)
		}
		return domain.Errorf(domain.Invalid, "the %ss must be a JSON object", noun)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return domain.Errorf(domain.Invalid, "the JSON is truncated: it ends before its last value does; send the whole body")
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := FieldPath(syn.JSONPointer)
		msg := syn.Err.Error()
		switch {
		case strings.Contains(msg, "duplicate"):
			return domain.Invalidf(field, "%s %q appears more than once", noun, field)
		case strings.Contains(msg, "after top-level value"):
			return domain.Errorf(domain.Invalid, "send exactly one JSON value")
		}
		return domain.Invalidf(field, "not valid JSON (at byte %d): %s", syn.ByteOffset, msg)
	}
	return domain.Errorf(domain.Invalid, "not valid JSON")
}

// knownNames says what to send instead of the unknown member name: the
// name that differs only in case, or the names t takes.
func knownNames(t reflect.Type, name, noun string) string {
	names := jsonNames(t)
	if len(names) == 0 {
		return "names are camelCase and case-sensitive"
	}
	for _, n := range names {
		if strings.EqualFold(n, name) || strings.EqualFold(n, strings.ReplaceAll(name, "_", "")) {
			return fmt.Sprintf("did you mean %q? Names are case-sensitive", n)
		}
	}
	return fmt.Sprintf("the %ss here are %s", noun, strings.Join(names, ", "))
}

// jsonNames lists the JSON member names of struct type t, in order, with
// those of embedded structs.
func jsonNames(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-" || (!f.IsExported() && !f.Anonymous):
		case f.Anonymous && name == "":
			names = append(names, jsonNames(f.Type)...)
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	// A field that takes the place of an embedded struct's (REST's
	// messages) is one name.
	seen := make(map[string]bool, len(names))
	return slices.DeleteFunc(names, func(n string) bool {
		dup := seen[n]
		seen[n] = true
		return dup
	})
}

// FieldPath renders a JSON pointer as a field path: /messages/0/role → messages[0].role.
// A path past maxFieldPath bytes (JSON nested ten thousand deep) is cut
// there, with "…", as an error message repeats it.
func FieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if b.Len() > maxFieldPath {
			b.WriteString("…")
			break
		}
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if left := maxFieldPath - b.Len(); len(tok) > left {
			// One name of a megabyte (an unknown field's) is cut too.
			b.WriteString(strings.ToValidUTF8(tok[:max(left, 0)], "") + "…")
			break
		}
		b.WriteString(tok)
	}
	return b.String()
}

// maxFieldPath is about the longest path FieldPath writes.
const maxFieldPath = 256

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[StopList]():
		return "a string or an array of strings"
	case reflect.TypeFor[Content]():
		return `a string or an array of {"type": "text", "text": "..."} parts`
	case reflect.TypeFor[ToolChoice]():
		return `"auto", "none", "required" or {"type": "function", "function": {"name": ...}}`
	case reflect.TypeFor[RawJSON](), reflect.TypeFor[Object]():
		return "a JSON object"
	case reflect.TypeFor[DataSource]():
		return `an object {"id": "doc_..."}`
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

// StopList is OpenAI's stop: a string or an array of strings.
type StopList []string

// UnmarshalJSON accepts a string or an array of strings.
func (s *StopList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

// Content is a message's text: a string, or OpenAI's array of content
// parts, each {"type": "text", "text": "..."}, whose texts are joined with
// newlines (what OpenAI-shaped clients such as the AI SDK send). Parley
// sends text only: a part of another type (image_url, input_audio, file)
// is refused, not dropped, since the model would answer without it.
type Content string

// partError says which content part is wrong and why.
type partError struct {
	index int
	msg   string
}

func (e *partError) Error() string { return e.msg }

// UnmarshalJSONFrom accepts a string or an array of text parts; a string,
// the common case, is read without a second pass.
func (c *Content) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*c = Content(tok.String())
		return nil
	}
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	var parts []jsontext.Value
	if err := json.Unmarshal(raw, &parts); err != nil {
		return errors.New(`content must be a string or an array of {"type": "text", "text": "..."} parts`)
	}
	texts := make([]string, len(parts))
	for i, raw := range parts {
		var part struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &part); err != nil || part.Type == "" {
			return &partError{i, `must be {"type": "text", "text": "..."}`}
		}
		if part.Type != "text" {
			return &partError{i, fmt.Sprintf(`is a part of type %q; Parley sends text only: send {"type": "text", "text": "..."} parts or a string`, part.Type)}
		}
		if err := json.Unmarshal(raw, &part, json.RejectUnknownMembers(true)); err != nil || part.Text == nil {
			return &partError{i, `must be {"type": "text", "text": "..."}: a text part has a string text and nothing else`}
		}
		texts[i] = *part.Text
	}
	*c = Content(strings.Join(texts, "\n"))
	return nil
}

// UnmarshalJSON is UnmarshalJSONFrom for encoding/json.
func (c *Content) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, c) }

// Timestamp formats t as ISO 8601 UTC with milliseconds.
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// OptionalTimestamp is Timestamp of a time that may be none: nil for the
// zero time.
func OptionalTimestamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := Timestamp(t)
	return &s
}

// timeLayouts are the forms of a time ParseTime takes: RFC 3339, ISO 8601's
// extended forms without seconds or with an offset without its colon
// (+0100), and a date.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04Z0700", "2006-01-02"}

// ParseTime reads an optional ISO 8601 time or date; "" is the zero time.
// A time from 10000-01-01 on in UTC (9999-12-31T23:00:00-05:00 is one) is
// Invalid.
func ParseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	// RFC 3339 allows a lower-case t and z, which Go's parser does not,
	// and a space between the date and the time (§5.6), as Python's
	// str(datetime) and PostgreSQL write them.
	u := strings.ToUpper(v)
	if len(u) > 10 && u[10] == ' ' {
		u = u[:10] + "T" + u[11:]
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, u); err == nil {
			if err := checkOffset(field, t); err != nil {
				return time.Time{}, err
			}
			// Nothing Parley stores predates the Unix epoch, and an
			// earlier time such as 0001-01-01 is Go's zero time, which
			// callers read as "not given".
			if t.Before(epoch) {
				return epoch, nil
			}
			// Nor can a time be later than 9999 in UTC: Timestamp
			// could not write it as ISO 8601, and SQLite, which keeps
			// times as text, would sort "10000-…" before every other.
			if !t.Before(yearTenThousand) {
				return time.Time{}, domain.Invalidf(field, "%s is %s in UTC, later than the latest time the API writes, %s",
					field, t.UTC().Format(time.RFC3339Nano), Timestamp(yearTenThousand.Add(-time.Millisecond)))
			}
			return t.UTC(), nil
		}
	}
	// A time of day without an offset is ISO 8601 too (Python's
	// isoformat of a naive time writes one), but names no instant.
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04"} {
		if _, err := time.Parse(layout, u); err == nil {
			return time.Time{}, domain.Invalidf(field, "%s has no UTC offset: add Z for UTC, or an offset such as +02:00 (%sZ)", field, v)
		}
	}
	return time.Time{}, domain.Invalidf(field, "%s must be an ISO 8601 time with a UTC offset, in its extended form, such as 2026-01-31T00:00:00Z or 2026-01-31T02:00+02:00, or a date such as 2026-01-31", field)
}

// ParseDateTime reads an RFC 3339 time: a date, a time of day and a UTC
// offset (a date alone, which ParseTime takes, is not one).
func ParseDateTime(field, v string) (time.Time, error) {
	// RFC 3339 allows a lower-case t and z; Go's parser does not.
	if t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(v)); err == nil {
		if err := checkOffset(field, t); err != nil {
			return time.Time{}, err
		}
		return t.UTC(), nil
	}
	return time.Time{}, domain.Invalidf(field, "%s must be an RFC 3339 time with a UTC offset, such as 2027-01-31T00:00:00Z", field)
}

// checkOffset refuses a time whose UTC offset is 24 hours or more, which
// RFC 3339 does not allow (its hours run to 23) and Go's parser takes.
func checkOffset(field string, t time.Time) error {
	if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return domain.Invalidf(field, "%s has a UTC offset of 24 hours or more; an offset runs from -23:59 to +23:59", field)
	}
	return nil
}

// ParseQueryTime is ParseTime for a URL query parameter, where a + left
// unescaped reads as a space: the error of a time whose offset's + came as
// one says to send it as %2B. (Elsewhere, as in MCP arguments, a space is
// what was sent, and %2B would be read as is.)
func ParseQueryTime(field, v string) (time.Time, error) {
	t, err := ParseTime(field, v)
	if err == nil {
		return t, nil
	}
	if i := strings.LastIndexByte(v, ' '); i >= 0 {
		if _, perr := ParseTime(field, v[:i]+"+"+v[i+1:]); perr == nil {
			return time.Time{}, domain.Invalidf(field, "%s has a space where its UTC offset's + goes: in a URL query a + reads as a space, so send it as %%2B (%s)",
				field, v[:i]+"%2B"+v[i+1:])
		}
	}
	return time.Time{}, err
}

// RawJSON is a JSON value kept as sent, such as a JSON Schema; domain
// checks what it must be. null reads as none (nil).
type RawJSON []byte

// UnmarshalJSON keeps a copy of b.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*r = nil
		return nil
	}
	*r = append((*r)[:0], b...)
	return nil
}

// MarshalJSON writes the value as it was sent; none is null.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// Object is a free-form JSON object, such as a document's metadata,
// decoded without loss: its numbers stay as sent (encoding/json's Number,
// which encoding/json writes back as is), where decoding into any would
// make them float64 and round integers past 2⁵³ (a 64-bit id) and -0. null
// reads as none (nil).
type Object map[string]any

// UnmarshalJSON decodes b, which must be an object or null.
func (o *Object) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*o = nil
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return errNotAnObject
	}
	m, err := DecodeObject(b)
	*o = m
	return err
}

var errNotAnObject = errors.New("not a JSON object")

// DecodeObject decodes the JSON object b with its numbers as sent (see
// Object).
func DecodeObject(b []byte) (map[string]any, error) {
	dec := stdjson.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	err := dec.Decode(&m)
	return m, err
}

// ToolChoice is OpenAI's tool_choice: a mode ("auto", "none",
// "required"), or {"type": "function", "function": {"name": ...}}.
type ToolChoice struct {
	Mode string // the string, or the object's type
	Name string // the object's function.name
}

// UnmarshalJSON accepts the string or the object form, strictly.
func (c *ToolChoice) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*c = ToolChoice{}
		return json.Unmarshal(b, &c.Mode)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf(`toolChoice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	// The object names a function: {"type": "auto", ...} is no form of
	// either, and its name would be dropped unseen.
	if err := json.Unmarshal(b, &obj, json.RejectUnknownMembers(true)); err != nil || obj.Type != "function" {
		return fmt.Errorf(`toolChoice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	*c = ToolChoice{Mode: obj.Type, Name: obj.Function.Name}
	return nil
}

// epoch is the earliest time ParseTime returns; yearTenThousand is
// after the latest.
var (
	epoch           = time.Unix(0, 0).UTC()
	yearTenThousand = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Decoding bounds. A body's size alone does not bound what decoding it
// costs: 8 MiB of {"messages":[{},{},…]} is 2.8 million messages, which
// took 3.9 GB to decode before the domain could refuse more than 1,000.
// Bounded refuses, before decoding, a body holding more values, or an
// array of more items, than any request Parley takes needs.
const (
	// MaxArrayItems is the most items one array may hold, above every
	// list the domain takes (1,000 messages, 128 tools).
	MaxArrayItems = 4096
	// MaxValues is the most JSON values (objects, arrays, strings,
	// numbers, literals) a body may hold.
	MaxValues = 1 << 17
	// boundedFrom is the size from which a body is checked: a smaller one
	// holds too few values to cost much.
	boundedFrom = 64 << 10
)

// Bounded refuses data holding more than MaxValues JSON values or an
// array of more than MaxArrayItems items, naming the array; data that is
// not valid JSON is left to the decoder to refuse.
func Bounded(data []byte) error {
	if len(data) < boundedFrom {
		return nil
	}
	// What jsontext alone refuses, encoding/json (mcp-go's) takes, and
	// a scan that stopped there would let the rest through; a Buffer it
	// reads in place, where a Reader would be copied.
	dec := jsontext.NewDecoder(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var items []int // per open array, its items so far; -1 for an object
	for values := 0; ; {
		k := dec.PeekKind()
		if k == 0 || k == ']' || k == '}' {
			if _, err := dec.ReadToken(); err != nil {
				return nil
			}
			items = items[:max(len(items)-1, 0)]
			continue
		}
		if n := len(items); n > 0 && items[n-1] >= 0 {
			if items[n-1]++; items[n-1] > MaxArrayItems {
				field := FieldPath(dec.StackPointer().Parent())
				return domain.Invalidf(field, "%s holds more than %d items", cmp.Or(field, "the body"), MaxArrayItems)
			}
		}
		in, read := dec.StackIndex(dec.StackDepth())
		if name := k == '"' && in == '{' && read%2 == 0; !name {
			if values++; values > MaxValues {
				return domain.Errorf(domain.Invalid, "the body holds more than %d JSON values; no request Parley takes needs as many", MaxValues)
			}
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return nil // the decoder says what is wrong
		}
		switch tok.Kind() {
		case '[':
			items = append(items, 0)
		case '{':
			items = append(items, -1)
		}
	}
}

// Uncompressed refuses a request body sent with a Content-Encoding
// (gzip, br), which Parley does not decode: read as JSON it would be a
// puzzling "not valid JSON", or, a plain body so labelled, taken.
func Uncompressed(contentEncoding string) error {
	if ce := strings.TrimSpace(contentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		if len(ce) > 64 {
			ce = ce[:64] + "…"
		}
		return domain.Errorf(domain.Invalid, "Content-Encoding %q is not taken: send the body uncompressed, without a Content-Encoding", ce)
	}
	return nil
}
