package llm

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"12"}}, 12 * time.Second},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{"http date", http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second},
		{"date in the past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"milliseconds first", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"1"}}, 250 * time.Millisecond},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"negative", http.Header{"Retry-After": {"-3"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.h, now); got != tc.want {
				t.Errorf("retryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	key := "my-very-own-key-0000"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"the key itself", "bad key " + key + " given", "bad key [redacted] given"},
		{"an OpenAI-style key", "Incorrect API key provided: sk-proj-abcDEF123456.", "Incorrect API key provided: [redacted]"},
		{"a bearer token", "sent Authorization: Bearer abc.def.ghi", "sent Authorization: [redacted]"},
		{"key=value", "url had api_key=zzz&x=1", "url had [redacted]"},
		{"a long token", "token " + strings.Repeat("Ab9", 12) + " leaked", "token [redacted] leaked"},
		{"words with sk- inside", "ask-me task-force", "ask-me task-force"},
		{"control characters and spaces", "a\x00b\n\n  c\td", "a b c d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sanitize(tc.in, key, 200); got != tc.want {
				t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if got := sanitize(strings.Repeat("é ", 300), "", 10); got != "é é é é é…" {
		t.Errorf("long text cut to %q", got)
	}
}

func TestBodyMessage(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"error":{"message":"model not found","type":"invalid_request_error"}}`, "model not found"},
		{`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "Overloaded"},
		{`{"error":"plain string error"}`, "plain string error"},
		{`upstream connect error`, "upstream connect error"},
		{`<html>502 Bad Gateway</html>`, ""},
		{strings.Repeat("x", 300), ""},
	} {
		if got := bodyMessage([]byte(tc.body)); got != tc.want {
			t.Errorf("bodyMessage(%.40q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	base := 100 * time.Millisecond
	for attempt := range 4 {
		full := base << attempt
		seen := map[time.Duration]bool{}
		for range 50 {
			d := backoff(base, attempt)
			if d < full/2 || d > full {
				t.Fatalf("backoff(%v, %d) = %v, want in [%v, %v]", base, attempt, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 40 { // jittered over 50ms or more, in nanoseconds
			t.Errorf("backoff(%v, %d) gave %d distinct waits in 50: not jittered", base, attempt, len(seen))
		}
	}
}

func readAllCapped(r io.Reader) (string, error) {
	var buf bytes.Buffer
	_, err := io.Copy(&buf, r)
	return buf.String(), err
}

func TestLineCapReader(t *testing.T) {
	t.Run("lines under the cap pass", func(t *testing.T) {
		in := "data: " + strings.Repeat("a", 90) + "\n\n" + "data: [DONE]\n\n"
		ex := &exchange{}
		got, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: ex, maxLine: 100, maxOther: 1000})
		if err != nil || got != in {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a long line fails", func(t *testing.T) {
		in := "data: x\n\ndata: " + strings.Repeat("a", 200) + "\n\n"
		ex := &exchange{}
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(iotestOneByte(in)), ex: ex, maxLine: 100, maxOther: 1000})
		var le *limitError
		if !errors.As(err, &le) || le.Error() != "stream line exceeded 100 bytes" {
			t.Fatalf("err = %v", err)
		}
		if long, _ := ex.capHit(); !long {
			t.Error("the exchange does not record the long line")
		}
	})
	t.Run("non-data lines are bounded on OpenAI streams", func(t *testing.T) {
		in := strings.Repeat(": keep-alive comment\n", 100)
		ex := &exchange{}
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: ex, maxLine: 100, maxOther: 1000, countOther: true})
		if err == nil {
			t.Fatal("no error after 2 KB of comments with a 1 KB cap")
		}
		if _, large := ex.capHit(); !large {
			t.Error("the exchange does not record the overflow")
		}
	})
	t.Run("data lines do not count as other lines", func(t *testing.T) {
		in := strings.Repeat("data: {\"x\":1}\n\n", 500)
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: &exchange{}, maxLine: 100, maxOther: 100, countOther: true})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestCapReader(t *testing.T) {
	ex := &exchange{}
	if got, err := readAllCapped(&capReader{rc: io.NopCloser(strings.NewReader("12345")), ex: ex, left: 5}); err != nil || got != "12345" {
		t.Fatalf("at the cap: %q, %v", got, err)
	}
	_, err := readAllCapped(&capReader{rc: io.NopCloser(strings.NewReader("123456")), ex: ex, left: 5})
	if err == nil {
		t.Fatal("no error past the cap")
	}
	if _, large := ex.capHit(); !large {
		t.Error("the exchange does not record the overflow")
	}
}

// iotestOneByte returns a reader that reads one byte at a time.
func iotestOneByte(s string) io.Reader { return &oneByte{r: strings.NewReader(s)} }

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestSanitizeCutsBeforeRedacting(t *testing.T) {
	key := "sk-live-abcdefghijklmnop"
	// The key straddles the cut: no fragment of it may survive.
	s := strings.Repeat("word ", 400) + key + strings.Repeat(" tail", 100)
	for cut := range 40 {
		in := s[cut:]
		got := sanitize(in, key, 250)
		if strings.Contains(got, "abcdefgh") || strings.Contains(got, "sk-live") {
			t.Fatalf("cut %d: a fragment of the key survived: %q", cut, got)
		}
	}
}
