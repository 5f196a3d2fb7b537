package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/parleyhq/parley/domain"
)

// invalidOnly fails t unless err is a domain Invalid error with a message
// that is valid UTF-8 and bounded, as the one 400 envelope carries.
func invalidOnly(t *testing.T, in []byte, err error) {
	t.Helper()
	if k := domain.KindOf(err); k != domain.Invalid {
		t.Fatalf("%q: error of kind %v, want Invalid: %v", in, k, err)
	}
	msg := domain.MessageOf(err)
	if msg == "" || !utf8.ValidString(msg) {
		t.Fatalf("%q: bad message %q", in, msg)
	}
}

var completionSeeds = []string{
	`{"messages":[{"role":"user","content":"hi"}]}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stop":"x"}`,
	`{"messages":[{"role":"assistant","toolCalls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"},"extra_content":{"google":{"thought_signature":"x"}}}]},{"role":"tool","toolCallId":"c1","content":"ok"}]}`,
	`{"messages":[{"role":"user","documentId":"doc_01h0000000000000000000000"}],"dataSources":[{"id":"doc_x"}],"names":["a"]}`,
	`{"messages":[],"temperature":1.5,"maxTokens":1e3,"topP":0.5,"stop":["a","b"],"seed":-1,"frequencyPenalty":0,"presencePenalty":-2}`,
	`{"messages":[],"thinking":{"type":"enabled","budgetTokens":2048,"display":"summarized"},"reasoningEffort":"high","parallelToolCalls":false}`,
	`{"messages":[],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":true}}],"toolChoice":{"type":"function","function":{"name":"f"}}}`,
	`{"messages":[],"toolChoice":"auto","responseFormat":{"type":"json_schema","jsonSchema":{"name":"n","schema":{"type":"object"}}},"debug":true}`,
	`{"messages":[{"role":"user","content":null}],"maxTokens":1.5}`,
	`{"maxTokens":9223372036854775808}`,
	`{"maxTokens":-9223372036854775808.0}`,
	`{"maxTokens":1e-400}`,
	`{"Messages":[]}`, `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`,
	`{"messages":1}`, `{"a":1,"a":2}`, `{} {}`, `[`, `"x"`, `null`,
}

// FuzzUnmarshalCompletion drives Unmarshal, the strict decoding of every
// REST body and MCP argument object, with the completion fields, the
// richest of the request types. Refusals are Invalid only; what decodes
// encodes and decodes again to the same fields.
func FuzzUnmarshalCompletion(f *testing.F) {
	for _, s := range completionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v CompletionFields
		if err := Unmarshal(data, &v, "field"); err != nil {
			invalidOnly(t, data, err)
			return
		}
		_ = v.ToDomain()
		// Round trip, encoded as the REST API and MCP encode (encoding/json).
		// ToolChoice has no encoder of its own: its JSON form is written
		// by hand.
		tc := v.ToolChoice
		v.ToolChoice = nil
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%q decoded but does not encode: %v", data, err)
		}
		if tc != nil {
			var choice []byte
			if tc.Name == "" && tc.Mode != "function" {
				choice, _ = json.Marshal(tc.Mode)
			} else {
				choice, _ = json.Marshal(map[string]any{"type": tc.Mode, "function": map[string]any{"name": tc.Name}})
			}
			out = append(append(append(out[:len(out)-1], `,"toolChoice":`...), choice...), '}')
		}
		var again CompletionFields
		if err := Unmarshal(out, &again, "field"); err != nil {
			t.Fatalf("%q decoded, its encoding %s does not: %v", data, out, err)
		}
		v.ToolChoice = tc
		if !reflect.DeepEqual(normalize(v), normalize(again)) {
			t.Fatalf("round trip changed the fields:\n in  %q\n out %s\n %#v\n %#v", data, out, v, again)
		}
	})
}

// normalize compacts the raw JSON values of v, which a round trip may
// reformat, and makes empty lists nil.
func normalize(v CompletionFields) CompletionFields {
	compact := func(r RawJSON) RawJSON {
		if r == nil {
			return nil
		}
		var b bytes.Buffer
		if json.Compact(&b, r) != nil {
			return r
		}
		return b.Bytes()
	}
	if len(v.Messages) == 0 {
		v.Messages = nil
	}
	for i := range v.Messages {
		m := &v.Messages[i]
		if len(m.ToolCalls) == 0 {
			m.ToolCalls = nil
		}
		for j := range m.ToolCalls {
			m.ToolCalls[j].ExtraContent = compact(m.ToolCalls[j].ExtraContent)
		}
	}
	for i := range v.Tools {
		v.Tools[i].Function.Parameters = compact(v.Tools[i].Function.Parameters)
	}
	if r := v.ResponseFormat; r != nil && r.JSONSchema != nil {
		r.JSONSchema.Schema = compact(r.JSONSchema.Schema)
	}
	if len(v.Stop) == 0 {
		v.Stop = nil
	}
	if len(v.DataSources) == 0 {
		v.DataSources = nil
	}
	if len(v.Names) == 0 {
		v.Names = nil
	}
	if len(v.Tools) == 0 {
		v.Tools = nil
	}
	return v
}

// FuzzParseTime drives ParseTime and ParseQueryTime, which read the from,
// to and expiresAt of REST queries and bodies and MCP arguments: a time
// they take is UTC, from the epoch to the end of 9999, and reads back
// from its Timestamp at the millisecond; a refusal is Invalid naming the
// field.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"", "2026-01-31", "2026-01-31T10:00:00+02:00", "2026-01-31t10:00:00.5z",
		"2026-01-31 10:00:00Z", "2026-01-31T10:00Z", "2026-01-31T10:00:00.123456789+0100", "2026-01-31T10:00+0100",
		"0001-01-01", "9999-12-31T23:59:59.999999999Z", "9999-12-31T23:00:00-05:00", "2026-01-31T10:00:00+24:00",
		"2026-01-31T10:00:00", "2026-01-31T10:00:00 02:00", "20260301", "2026-02-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, parse := range []func(string, string) (time.Time, error){ParseTime, ParseQueryTime} {
			got, err := parse("from", v)
			if err != nil {
				invalidOnly(t, []byte(v), err)
				if domain.DetailsOf(err)["field"] != "from" {
					t.Fatalf("%q: refusal names %v, not from", v, domain.DetailsOf(err))
				}
				continue
			}
			if v == "" {
				if !got.IsZero() {
					t.Fatalf("ParseTime(\"\") = %v", got)
				}
				continue
			}
			if got.Location() != time.UTC || got.Before(epoch) || !got.Before(yearTenThousand) {
				t.Fatalf("ParseTime(%q) = %v: out of range or not UTC", v, got)
			}
			back, err := ParseTime("from", Timestamp(got))
			if err != nil || !back.Equal(got.Truncate(time.Millisecond)) {
				t.Fatalf("ParseTime(%q) = %v, whose Timestamp %s reads back as %v, %v", v, got, Timestamp(got), back, err)
			}
		}
		if got, err := ParseDateTime("to", v); err == nil {
			if got.Year() > 9999 {
				return // the domain bounds an expiry at 10 years ahead
			}
			back, err := ParseDateTime("to", got.Format(time.RFC3339Nano))
			if err != nil || !back.Equal(got) {
				t.Fatalf("ParseDateTime(%q) = %v, which reads back as %v, %v", v, got, back, err)
			}
		} else {
			invalidOnly(t, []byte(v), err)
		}
	})
}

// FuzzBounded drives Bounded, the scan that refuses a body of too many
// values or array items before it is decoded, on bodies past its
// threshold: data is repeated to reach it. It must not panic, and a
// refusal is Invalid.
func FuzzBounded(f *testing.F) {
	for _, s := range []string{`{"a":[`, `[{},`, `{"x":"`, `[1,`, `{"a":{"b":[[`, "\xff"} {
		f.Add([]byte(s), uint16(5000))
	}
	f.Fuzz(func(t *testing.T, unit []byte, reps uint16) {
		if len(unit) == 0 {
			return
		}
		data := bytes.Repeat(unit, max(int(reps), boundedFrom/len(unit)+1))
		if len(data) > 1<<20 {
			data = data[:1<<20]
		}
		if err := Bounded(data); err != nil {
			invalidOnly(t, data[:min(len(data), 64)], err)
		}
		var v CompletionFields
		if err := Unmarshal(data, &v, "field"); err != nil {
			invalidOnly(t, data[:min(len(data), 64)], err)
		}
	})
}

// FuzzContent drives Content, a message's text as a string or OpenAI's
// text parts: what decodes is the parts' texts joined with newlines.
func FuzzContent(f *testing.F) {
	for _, s := range []string{`"x"`, `[{"type":"text","text":"a"}]`, `[]`, `[{"type":"text"}]`, `[{"type":"text","text":"a","x":1}]`, `[1]`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		err := Unmarshal(append(append([]byte(`{"role":"user","content":`), data...), '}'), &m, "field")
		if err != nil {
			invalidOnly(t, data, err)
			return
		}
		if m.Content == nil {
			return // null
		}
		var parts []struct {
			Text string `json:"text"`
		}
		if jsonv2.Unmarshal(data, &parts) == nil {
			texts := make([]string, len(parts))
			for i, p := range parts {
				texts[i] = p.Text
			}
			if want := strings.Join(texts, "\n"); string(*m.Content) != want {
				t.Fatalf("content %s decoded as %q, want %q", data, *m.Content, want)
			}
		}
	})
}
