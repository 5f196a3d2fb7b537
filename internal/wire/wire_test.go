package wire

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parleyhq/parley/domain"
)

type sample struct {
	Name     string   `json:"name"`
	Count    int      `json:"count"`
	Stop     StopList `json:"stop"`
	Messages []struct {
		Role string `json:"role"`
	} `json:"messages"`
}

func TestUnmarshalNamesTheField(t *testing.T) {
	tests := []struct{ in, field string }{
		{`{"nme": "x"}`, "nme"},
		{`{"Name": "x"}`, "Name"},
		{`{"name": "x", "name": "y"}`, "name"},
		{`{"count": 1.5}`, "count"},
		{`{"count": "1"}`, "count"},
		{`{"stop": 5}`, "stop"},
		{`{"messages": [{"role": 1}]}`, "messages[0].role"},
		{`{"messages": [{"rol": "user"}]}`, "messages[0].rol"},
	}
	for _, tt := range tests {
		var v sample
		err := Unmarshal([]byte(tt.in), &v, "field")
		if domain.KindOf(err) != domain.Invalid || domain.DetailsOf(err)["field"] != tt.field {
			t.Errorf("Unmarshal(%s) = %v (details %v), want Invalid naming %s", tt.in, err, domain.DetailsOf(err), tt.field)
		}
	}
	// A data source sent as a bare id is told the shape it takes.
	var in CompletionFields
	if err := Unmarshal([]byte(`{"dataSources": ["doc_1"]}`), &in, "field"); !strings.Contains(domain.MessageOf(err), `{"id": "doc_..."}`) {
		t.Errorf("dataSources of ids = %v, want the shape a data source takes", err)
	}
	for _, bad := range []string{`{} {}`, `{"name":`, `[]`} {
		var v sample
		if err := Unmarshal([]byte(bad), &v, "field"); domain.KindOf(err) != domain.Invalid {
			t.Errorf("Unmarshal(%s) = %v, want Invalid", bad, err)
		}
	}
}

func TestStopList(t *testing.T) {
	for in, want := range map[string]int{`{"stop": "x"}`: 1, `{"stop": ["a", "b"]}`: 2} {
		var v sample
		if err := Unmarshal([]byte(in), &v, "field"); err != nil || len(v.Stop) != want {
			t.Errorf("Unmarshal(%s) = %v, %v", in, v.Stop, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	if _, err := ParseTime("from", "2026-01-31"); err != nil {
		t.Error(err)
	}
	if got, err := ParseTime("from", "2026-01-31T10:00:00+02:00"); err != nil || got.Hour() != 8 {
		t.Errorf("ParseTime = %v, %v; want 08:00 UTC", got, err)
	}
	if got, err := ParseTime("from", "2026-01-31t10:00:00.5z"); err != nil || got.Hour() != 10 || got.Nanosecond() != 5e8 {
		t.Errorf("ParseTime with a lower-case t and z = %v, %v; want 10:00:00.5 UTC (RFC 3339 §5.6)", got, err)
	}
	// Go's zero time would read as "not given", and the usage report's
	// default period would replace an explicit "since ever".
	if got, err := ParseTime("from", "0001-01-01"); err != nil || !got.Equal(time.Unix(0, 0)) {
		t.Errorf("ParseTime(0001-01-01) = %v, %v; want the Unix epoch", got, err)
	}
	// Nothing can be later than 9999 in UTC: an ISO 8601 time could not
	// name it, and SQLite, which keeps times as text, would sort it first.
	if got, err := ParseTime("to", "9999-12-31T23:59:59.999999999Z"); err != nil || got.Year() != 9999 {
		t.Errorf("ParseTime(the end of 9999) = %v, %v", got, err)
	}
	for _, v := range []string{"9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59.999999999-00:01"} {
		if _, err := ParseTime("to", v); domain.KindOf(err) != domain.Invalid || domain.DetailsOf(err)["field"] != "to" ||
			!strings.Contains(domain.MessageOf(err), "10000-01-01T") {
			t.Errorf("ParseTime(%q) = %v; want Invalid naming to and the time in UTC", v, err)
		}
	}
	// A time without a UTC offset (Python's isoformat of a naive time) is
	// ISO 8601 but names no instant: the error says what is missing,
	// rather than that it is no ISO 8601 time.
	for _, v := range []string{"2026-01-31T10:00:00", "2026-01-31T10:00:00.123456"} {
		if _, err := ParseQueryTime("from", v); domain.DetailsOf(err)["field"] != "from" || !strings.Contains(domain.MessageOf(err), "no UTC offset") {
			t.Errorf("ParseQueryTime(%q) = %v; want an error saying it has no UTC offset", v, err)
		}
	}
	// ISO 8601's other extended forms, and RFC 3339's space for the T (as
	// Python's str(datetime) and PostgreSQL write a time), are the same
	// instant.
	for _, v := range []string{"2026-01-31 08:00:00Z", "2026-01-31T08:00Z", "2026-01-31T10:00:00+0200", "2026-01-31T10:00+02:00",
		"2026-01-31T10:00+0200", "2026-01-31 10:00:00.000+02:00"} {
		if got, err := ParseTime("from", v); err != nil || !got.Equal(time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC)) {
			t.Errorf("ParseTime(%q) = %v, %v; want 2026-01-31T08:00:00Z", v, got, err)
		}
	}
	// The errors read the same forms: no offset, or an offset's + that a
	// URL query read as a space.
	if _, err := ParseTime("from", "2026-01-31 10:00"); !strings.Contains(domain.MessageOf(err), "no UTC offset") {
		t.Errorf("ParseTime(2026-01-31 10:00) = %v; want an error saying it has no UTC offset", err)
	}
	for _, v := range []string{"2026-01-31 10:00:00 02:00", "2026-01-31T10:00 02:00", "2026-01-31T10:00:00 0200"} {
		if _, err := ParseQueryTime("from", v); err == nil || !strings.Contains(err.Error(), "%2B") {
			t.Errorf("ParseQueryTime(%q) = %v; want the %%2B hint", v, err)
		}
	}
	if _, err := ParseTime("from", "yesterday"); domain.DetailsOf(err)["field"] != "from" {
		t.Errorf("ParseTime(yesterday) = %v", err)
	}
	// An offset's + sent unescaped in a URL query arrives as a space:
	// the error says so, rather than only what a time looks like. Outside
	// a URL query, %2B would not be read as a +.
	if _, err := ParseQueryTime("from", "2026-01-31T10:00:00 02:00"); err == nil || !strings.Contains(err.Error(), "%2B") {
		t.Errorf("ParseQueryTime with a space for the offset's + = %v; want an error saying to send + as %%2B", err)
	}
	if _, err := ParseTime("from", "2026-01-31T10:00:00 02:00"); err == nil || strings.Contains(err.Error(), "%2B") {
		t.Errorf("ParseTime with a space for the offset's + = %v; want the error of any other time", err)
	}
	if got, err := ParseQueryTime("from", "2026-01-31T10:00:00+02:00"); err != nil || got.Hour() != 8 {
		t.Errorf("ParseQueryTime = %v, %v; want 08:00 UTC", got, err)
	}
}

// TestParseDateTime: an RFC 3339 time, in any offset or case, read as UTC;
// a date alone, a time without an offset and "" are not one.
func TestParseDateTime(t *testing.T) {
	for v, want := range map[string]time.Time{
		"2027-01-31T10:00:00Z":           time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC),
		"2027-01-31T10:00:00+02:00":      time.Date(2027, 1, 31, 8, 0, 0, 0, time.UTC),
		"2027-01-31t10:00:00.123456789z": time.Date(2027, 1, 31, 10, 0, 0, 123456789, time.UTC),
	} {
		got, err := ParseDateTime("expiresAt", v)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseDateTime(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "2027-01-31", "2027-01-31T10:00:00", "2027-01-31 10:00:00Z", "tomorrow"} {
		_, err := ParseDateTime("expiresAt", v)
		if domain.KindOf(err) != domain.Invalid || domain.DetailsOf(err)["field"] != "expiresAt" ||
			domain.MessageOf(err) != "expiresAt must be an RFC 3339 time with a UTC offset, such as 2027-01-31T00:00:00Z" {
			t.Errorf("ParseDateTime(%q) = %v; want the Invalid error naming expiresAt", v, err)
		}
	}
}

// TestOffsetOf24Hours: RFC 3339's offset hours run to 23; Go's parser
// takes 24, and +24:00 was read as a day earlier.
func TestOffsetOf24Hours(t *testing.T) {
	for _, v := range []string{"2027-01-01T00:00:00+24:00", "2027-01-01T00:00:00-24:00", "2027-01-01T00:00:00+24:59"} {
		_, err1 := ParseDateTime("expiresAt", v)
		_, err2 := ParseTime("from", v)
		for _, err := range []error{err1, err2} {
			if domain.KindOf(err) != domain.Invalid || !strings.Contains(domain.MessageOf(err), "UTC offset of 24 hours or more") {
				t.Errorf("%s: err = %v, want Invalid saying the offset is out of range", v, err)
			}
		}
	}
	if _, err := ParseDateTime("expiresAt", "2027-01-01T00:00:00+23:59"); err != nil {
		t.Errorf("+23:59: %v", err)
	}
}

// TestUnknownNameSaysWhatToSend: an unknown member's error names the one
// that differs only in case (or by snake_case), else lists the names
// taken there, including those of embedded structs.
func TestUnknownNameSaysWhatToSend(t *testing.T) {
	type Inner struct {
		Alpha int `json:"alpha"`
	}
	type in struct {
		MaxTokens int `json:"maxTokens"`
		Inner
		Name  string `json:"name,omitempty"`
		Alpha string `json:"alpha"` // takes the place of Inner's: one name
	}
	for body, want := range map[string]string{
		`{"max_tokens":1}`: `unknown field "max_tokens"; did you mean "maxTokens"? Names are case-sensitive`,
		`{"NAME":"x"}`:     `unknown field "NAME"; did you mean "name"? Names are case-sensitive`,
		`{"colour":1}`:     `unknown field "colour"; the fields here are maxTokens, alpha, name`,
	} {
		var v in
		if got := domain.MessageOf(Unmarshal([]byte(body), &v, "field")); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

// TestIntegersAsJSONSchemaCountsThem: an int field takes any number with
// an integer value (5.0, 1e3), as JSON Schema does, and refuses fractions
// and integers too large, naming the field.
func TestIntegersAsJSONSchemaCountsThem(t *testing.T) {
	type in struct {
		N *int `json:"n"`
		M int  `json:"m"`
	}
	for body, want := range map[string]int{`{"n":5}`: 5, `{"n":5.0}`: 5, `{"n":1e3}`: 1000, `{"n":-2.0}`: -2, `{"m":7.0,"n":1}`: 1} {
		var v in
		if err := Unmarshal([]byte(body), &v, "field"); err != nil || v.N == nil || *v.N != want {
			t.Errorf("%s: %v, %v; want n = %d", body, v.N, err, want)
		}
	}
	for _, body := range []string{`{"n":5.5}`, `{"n":1e300}`, `{"n":99999999999999999999}`, `{"n":"5"}`, `{"m":0.1}`} {
		var v in
		err := Unmarshal([]byte(body), &v, "field")
		if f := domain.DetailsOf(err)["field"]; (f != "n" && f != "m") || domain.KindOf(err) != domain.Invalid {
			t.Errorf("%s: %v (field %v); want an invalid field", body, err, f)
		}
	}
}

func TestRejectNulls(t *testing.T) {
	for in, field := range map[string]string{
		`{"name": null}`: "name",
		`{"name": "x", "count": 1, "stop": null}`:         "stop",
		`{"messages": [{}], "name": null, "count": null}`: "name", // the first one
	} {
		if err := RejectNulls([]byte(in), "field", "leave it out"); domain.KindOf(err) != domain.Invalid || domain.DetailsOf(err)["field"] != field {
			t.Errorf("RejectNulls(%s) = %v (details %v), want Invalid naming %s", in, err, domain.DetailsOf(err), field)
		}
	}
	// Nulls inside a member's value are the value's business (a document's
	// metadata may hold them); what is not an object was refused before.
	for _, ok := range []string{`{}`, `{"name": "x", "meta": {"k": null}, "list": [null]}`, `null`, `[null]`} {
		if err := RejectNulls([]byte(ok), "field", "leave it out"); err != nil {
			t.Errorf("RejectNulls(%s) = %v, want nil", ok, err)
		}
	}
}

// TestBoundedRefusesBeforeDecoding: a body of many small values is refused
// before it is decoded, naming the array too long; one within the bounds,
// however large its strings, decodes, and a small body is not scanned.
func TestBoundedRefusesBeforeDecoding(t *testing.T) {
	repeat := func(item string, n int) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	pad := `"name":"` + strings.Repeat("x", boundedFrom) + `"`
	for _, tc := range []struct {
		name, body, field, want string // want "" decodes
	}{
		{"messages past the bound", `{` + pad + `,"messages":[` + repeat(`{}`, MaxArrayItems+1) + `]}`, "messages", "messages holds more than 4096 items"},
		{"a nested array", `{` + pad + `,"messages":[{"role":"user"},{"role":[` + repeat(`0`, MaxArrayItems+1) + `]}]}`, "messages[1].role", "more than 4096 items"},
		{"the top-level array", `[` + repeat(`1`, MaxArrayItems+1) + `]` + strings.Repeat(" ", boundedFrom), "", "the body holds more than 4096 items"},
		{"values past the bound", `{` + pad + `,"messages":[` + repeat(`{"role":[`+repeat(`0`, 4000)+`]}`, 33) + `]}`, "", "more than 131072 JSON values"},
		{"at the bounds", `{` + pad + `,"messages":[` + repeat(`{"role":"user"}`, MaxArrayItems) + `]}`, "", ""},
		{"small, not scanned", `{"messages":[` + repeat(`{}`, MaxArrayItems+1) + `]}`, "", ""},
		// What encoding/json (mcp-go's) takes before such an array must
		// not end the scan.
		{"after a repeated name", `{` + pad + `,"name":"b","messages":[` + repeat(`{}`, MaxArrayItems+1) + `]}`, "messages", "more than 4096 items"},
		{"after invalid UTF-8", `{` + pad + `,"x":"` + "\xff" + `","messages":[` + repeat(`{}`, MaxArrayItems+1) + `]}`, "messages", "more than 4096 items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			err := Unmarshal([]byte(tc.body), &v, "field")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Unmarshal: %v; want it decoded", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || domain.KindOf(err) != domain.Invalid {
				t.Fatalf("Unmarshal: %v; want an Invalid error saying %q", err, tc.want)
			}
			if f, _ := domain.DetailsOf(err)["field"].(string); f != tc.field {
				t.Errorf("field %q; want %q", f, tc.field)
			}
		})
	}
}

// TestDeepNestingNamedShortly: JSON nested past the decoder's depth is
// refused naming a field cut short, not ten thousand [0]s.
func TestDeepNestingNamedShortly(t *testing.T) {
	body := `{"metadata":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}`
	var v map[string]any
	err := Unmarshal([]byte(body), &v, "field")
	if err == nil || domain.KindOf(err) != domain.Invalid {
		t.Fatalf("Unmarshal: %v; want Invalid", err)
	}
	if f, _ := domain.DetailsOf(err)["field"].(string); len(f) > 512 || !strings.HasPrefix(f, "metadata[0][0]") {
		t.Errorf("the field is %d bytes: %.200s…", len(f), f)
	}
}

// TestLongUnknownNameNamedShortly: one unknown field's name of a megabyte
// is cut in the field and the message, which carry it twice in a 400.
func TestLongUnknownNameNamedShortly(t *testing.T) {
	name := strings.Repeat("é", 1<<19)
	var v sample
	err := Unmarshal([]byte(`{"`+name+`":1}`), &v, "field")
	if err == nil || domain.KindOf(err) != domain.Invalid {
		t.Fatalf("Unmarshal: %v; want Invalid", err)
	}
	f, _ := domain.DetailsOf(err)["field"].(string)
	if len(f) > 512 || !strings.HasPrefix(f, "éé") || !strings.HasSuffix(f, "…") || !utf8.ValidString(f) {
		t.Errorf("the field is %d bytes: %.200s…", len(f), f)
	}
	if msg := domain.MessageOf(err); len(msg) > 2048 {
		t.Errorf("the message is %d bytes: %.200s…", len(msg), msg)
	}
}

// TestTruncatedJSON: a body cut short says so, not the decoder's words.
func TestTruncatedJSON(t *testing.T) {
	for _, body := range []string{`{"name": "x"`, `{"name": "x`, `{"tags": [1, 2`} {
		var v struct {
			Name string `json:"name"`
			Tags []int  `json:"tags"`
		}
		err := Unmarshal([]byte(body), &v, "field")
		if msg := domain.MessageOf(err); !strings.Contains(msg, "the JSON is truncated") || strings.Contains(msg, "EOF") {
			t.Errorf("%s: %v, want it said to be truncated", body, err)
		}
	}
}

// TestBodyTooLarge: a 413 says the limit, the size when the request said
// it, and what to do.
func TestBodyTooLarge(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want string
	}{
		{2048, "the request body is 2048 bytes, over the 1024-byte limit; send a smaller one"},
		{0, "the request body is over the 1024-byte limit; send a smaller one"},
	} {
		if got := BodyTooLarge(tc.size, 1024); !strings.HasPrefix(got, tc.want) {
			t.Errorf("BodyTooLarge(%d, 1024) = %q, want it to begin %q", tc.size, got, tc.want)
		}
	}
	if got := BodyTooLarge(0, 0); !strings.HasPrefix(got, "the request body is too large; send a smaller one") {
		t.Errorf("BodyTooLarge(0, 0) = %q, want it to say too large and what to do", got)
	}
}
