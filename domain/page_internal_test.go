package domain

import (
	"encoding/json"
	"strings"
	"testing"
)

// jsonBytesCases are strings of every kind jsonBytes counts apart.
var jsonBytesCases = []string{
	"", "plain", `"quoted" \ back`, "<tr><td>a &amp; b</td></tr>", "line\nbreak\r\ttab\b\f",
	"\x00\x01\x1f\x7f", "é 中文 🎉", "\u2028\u2029", "bad \xff\xfe utf-8 \xe2\x82", strings.Repeat("<", 1000),
}

// TestJSONBytesIsWhatEncodingJSONWrites: a page's size is what mcp-go will
// send, to the byte.
func TestJSONBytesIsWhatEncodingJSONWrites(t *testing.T) {
	for _, s := range jsonBytesCases {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonBytes(s); got != len(b) {
			t.Errorf("jsonBytes(%q) = %d, want %d, the length of %s", s, got, len(b), b)
		}
	}
}

func FuzzJSONBytes(f *testing.F) {
	for _, s := range jsonBytesCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonBytes(s); got != len(b) {
			t.Errorf("jsonBytes(%q) = %d, want %d", s, got, len(b))
		}
	})
}
