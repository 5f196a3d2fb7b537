package llm

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Some upstreams split a reply's text between stream chunks at a byte, not
// a character: the two halves of "€" arrive as invalid UTF-8 in the JSON
// strings of two chunks. Decoded chunk by chunk, each half would become
// U+FFFD. rawText keeps a chunk's bytes as they are, and utf8Joiner joins
// the halves again.

// rawText is a JSON string decoded without replacing its invalid UTF-8,
// which lenient would turn into U+FFFD; null decodes as "". A list of
// typed parts, which Mistral's reasoning models send for content, decodes
// as the text of its text parts (see contentPart).
type rawText string

func (t *rawText) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	switch v.Kind() {
	case 'n':
		*t = ""
		return nil
	case '"':
		*t = rawText(unquoteKeepingBytes(v))
		return nil
	case '[':
		var parts []contentPart
		if err := jsonv2.Unmarshal(v, &parts, lenient); err != nil {
			return err
		}
		*t = rawText(partsText(parts))
		return nil
	}
	return fmt.Errorf("want a JSON string or a list of content parts, got %s", v)
}

// contentPart is one part of a content sent as a list: {"type": "text",
// "text": ...} is text, and the others ({"type": "thinking", ...}, a
// reasoning model's thinking; "reference") are not the reply, as
// reasoning_content is not.
type contentPart struct {
	Type string  `json:"type"`
	Text rawText `json:"text"`
}

func partsText(parts []contentPart) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(string(p.Text))
		}
	}
	return b.String()
}

// unquoteKeepingBytes decodes the JSON string v, as read (valid but for its
// UTF-8), keeping invalid UTF-8 bytes as they are. Escapes are ASCII, so
// each run of valid UTF-8 between invalid bytes is unquoted on its own.
func unquoteKeepingBytes(v []byte) string {
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	var quoted []byte
	start := 0 // of the run of valid UTF-8 being read
	unquote := func(end int) {
		if end > start {
			quoted = append(append(append(quoted[:0], '"'), s[start:end]...), '"')
			out, _ = jsontext.AppendUnquote(out, quoted)
		}
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			unquote(i)
			out = append(out, s[i])
			start = i + 1
		}
		i += n
	}
	unquote(len(s))
	return string(out)
}

// utf8Joiner joins the characters an upstream split between the text of
// two deltas.
type utf8Joiner struct {
	held string // the start of a character whose other bytes are to come
}

// next returns the text of a delta to pass on: the bytes held from the one
// before, then text, less an incomplete character at its end, which it
// holds for the next delta. Invalid UTF-8 becomes U+FFFD, a byte each, as
// encoding/json decodes it.
func (j *utf8Joiner) next(text string) string {
	text = j.held + text
	n := len(text) - incompleteTail(text)
	text, j.held = text[:n], text[n:]
	return validUTF8(text)
}

// flush returns what is still held, at the end of the text: the start of a
// character that never ended, as U+FFFD.
func (j *utf8Joiner) flush() string {
	text := validUTF8(j.held)
	j.held = ""
	return text
}

// incompleteTail returns the length of the incomplete UTF-8 sequence at the
// end of s, the start of a character whose other bytes are missing; 0 when
// there is none.
func incompleteTail(s string) int {
	for i := len(s) - 1; i >= 0 && i > len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if utf8.FullRuneInString(s[i:]) {
				return 0
			}
			return len(s) - i
		}
	}
	return 0
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced with U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for _, r := range s {
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
