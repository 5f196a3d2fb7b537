package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, DefaultRetryAfter},
		{"no header at all", nil, DefaultRetryAfter},
		{"seconds", http.Header{"Retry-After": {"12"}}, 12 * time.Second},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{"http date", http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second},
		{"date in the past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, DefaultRetryAfter},
		{"milliseconds first", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"1"}}, 250 * time.Millisecond},
		{"garbage", http.Header{"Retry-After": {"soon"}}, DefaultRetryAfter},
		{"negative", http.Header{"Retry-After": {"-3"}}, DefaultRetryAfter},
		{"zero", http.Header{"Retry-After": {"0"}}, DefaultRetryAfter},
		{"a year in seconds is capped", http.Header{"Retry-After": {"31536000"}}, MaxRetryAfter},
		{"absurd seconds are capped", http.Header{"Retry-After": {"1e300"}}, MaxRetryAfter},
		{"absurd milliseconds are capped", http.Header{"Retry-After-Ms": {"1e300"}}, MaxRetryAfter},
		{"a date a year away is capped", http.Header{"Retry-After": {now.AddDate(1, 0, 0).Format(http.TimeFormat)}}, MaxRetryAfter},
		{"Retry-After before the reset headers", http.Header{"Retry-After": {"3"}, "X-Ratelimit-Reset-Requests": {"1m"}}, 3 * time.Second},
		{"garbage Retry-After falls through", http.Header{"Retry-After": {"soon"}, "X-Ratelimit-Reset-Tokens": {"20ms"}}, 20 * time.Millisecond},

		{"openai requests exhausted", http.Header{
			"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Remaining-Requests": {"0"},
			"X-Ratelimit-Reset-Tokens": {"6m0s"}, "X-Ratelimit-Remaining-Tokens": {"1500"},
		}, time.Second},
		{"openai tokens exhausted", http.Header{
			"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Remaining-Requests": {"59"},
			"X-Ratelimit-Reset-Tokens": {"1m30.5s"}, "X-Ratelimit-Remaining-Tokens": {"0"},
		}, 90*time.Second + 500*time.Millisecond},
		{"openai both exhausted: the later", http.Header{
			"X-Ratelimit-Reset-Requests": {"20ms"}, "X-Ratelimit-Remaining-Requests": {"0"},
			"X-Ratelimit-Reset-Tokens": {"2s"}, "X-Ratelimit-Remaining-Tokens": {"0"},
		}, 2 * time.Second},
		{"openai none exhausted: the later", http.Header{
			"X-Ratelimit-Reset-Requests": {"20ms"}, "X-Ratelimit-Remaining-Requests": {"3"},
			"X-Ratelimit-Reset-Tokens": {"6m0s"},
		}, 6 * time.Minute},
		{"openai milliseconds", http.Header{"X-Ratelimit-Reset-Requests": {"20ms"}}, 20 * time.Millisecond},
		{"openai garbage", http.Header{"X-Ratelimit-Reset-Requests": {"tomorrow"}, "X-Ratelimit-Remaining-Requests": {"0"}}, DefaultRetryAfter},
		{"openai days are capped", http.Header{"X-Ratelimit-Reset-Tokens": {"8760h"}}, MaxRetryAfter},

		{"anthropic output tokens exhausted", http.Header{
			"Anthropic-Ratelimit-Requests-Reset": {at(50 * time.Second)}, "Anthropic-Ratelimit-Requests-Remaining": {"10"},
			"Anthropic-Ratelimit-Output-Tokens-Reset": {at(5 * time.Second)}, "Anthropic-Ratelimit-Output-Tokens-Remaining": {"0"},
		}, 5 * time.Second},
		{"anthropic requests exhausted", http.Header{
			"Anthropic-Ratelimit-Requests-Reset": {at(12 * time.Second)}, "Anthropic-Ratelimit-Requests-Remaining": {"0"},
			"Anthropic-Ratelimit-Tokens-Reset": {at(40 * time.Second)}, "Anthropic-Ratelimit-Tokens-Remaining": {"9000"},
		}, 12 * time.Second},
		{"anthropic input tokens exhausted", http.Header{
			"Anthropic-Ratelimit-Input-Tokens-Reset": {at(7 * time.Second)}, "Anthropic-Ratelimit-Input-Tokens-Remaining": {"0"},
			"Anthropic-Ratelimit-Tokens-Reset": {at(40 * time.Second)},
		}, 7 * time.Second},
		{"anthropic none exhausted: the latest", http.Header{
			"Anthropic-Ratelimit-Requests-Reset": {at(3 * time.Second)},
			"Anthropic-Ratelimit-Tokens-Reset":   {at(9 * time.Second)},
		}, 9 * time.Second},
		{"anthropic fractional seconds", http.Header{"Anthropic-Ratelimit-Tokens-Reset": {now.Add(1500 * time.Millisecond).Format(time.RFC3339Nano)}}, 1500 * time.Millisecond},
		{"anthropic reset in the past", http.Header{"Anthropic-Ratelimit-Requests-Reset": {at(-time.Minute)}, "Anthropic-Ratelimit-Requests-Remaining": {"0"}}, DefaultRetryAfter},
		{"anthropic garbage", http.Header{"Anthropic-Ratelimit-Requests-Reset": {"soon"}}, DefaultRetryAfter},
		{"anthropic a year away is capped", http.Header{"Anthropic-Ratelimit-Tokens-Reset": {now.AddDate(1, 0, 0).Format(time.RFC3339)}}, MaxRetryAfter},

		// OpenRouter: a unix time in milliseconds.
		{"openrouter exhausted", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(90*time.Second).UnixMilli(), 10)}, "X-Ratelimit-Remaining": {"0"}}, 90 * time.Second},
		{"openrouter in seconds", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(20*time.Second).Unix(), 10)}}, 20 * time.Second},
		{"openrouter a count is no time", http.Header{"X-Ratelimit-Reset": {"30"}}, DefaultRetryAfter},
		{"openrouter a day away is capped", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(20*time.Hour).UnixMilli(), 10)}}, MaxRetryAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.h, nil, now); got != tc.want {
				t.Errorf("retryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetryAfterInTheBody: OpenRouter gives its X-RateLimit-* in the body
// too, as error.metadata.headers, where an in-band 429 has no headers.
func TestRetryAfterInTheBody(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	body := fmt.Sprintf(`{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-day",`+
		`"metadata":{"headers":{"X-RateLimit-Limit":"50","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"%d"}}}}`, now.Add(25*time.Minute).UnixMilli())
	if got := retryAfter(http.Header{}, []byte(body), now); got != 25*time.Minute {
		t.Errorf("retryAfter = %v, want 25m0s", got)
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
		{"a bearer token in brackets", "(raw Bearer abc.def.ghi), then", "(raw [redacted]), then"},
		{"the key as a bearer token", "sent Authorization: Bearer " + key + ".", "sent Authorization: Bearer [redacted]."},
		{"key=value", "url had api_key=zzz&x=1", "url had [redacted]"},
		{"a long token", "token " + strings.Repeat("Ab9", 12) + " leaked", "token [redacted] leaked"},
		{"a URL's path", "see https://platform.openai.com/docs/guides/error-codes/api-errors.", "see https://platform.openai.com/docs/guides/error-codes/api-errors."},
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
		// OpenRouter: the provider's own error in metadata.raw.
		{`{"error":{"code":400,"message":"Provider returned error","metadata":{"raw":"{\"error\":{\"code\":400,\"message\":\"Function call is missing a thought_signature\"}}","provider_name":"Google"}}}`,
			"Provider returned error: Function call is missing a thought_signature"},
		{`{"error":{"code":502,"message":"Provider returned error","metadata":{"raw":"upstream timed out"}}}`, "Provider returned error: upstream timed out"},
		{`{"error":{"code":502,"message":"Provider returned error","metadata":{"raw":{"not":"a string"}}}}`, "Provider returned error"},
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
	// However many retries came before, one wait is at most maxBackoff.
	for _, attempt := range []int{8, 10, 40, 70} {
		if d := backoff(10*time.Second, attempt); d < maxBackoff/2 || d > maxBackoff {
			t.Errorf("backoff(10s, %d) = %v, want in [%v, %v]", attempt, d, maxBackoff/2, maxBackoff)
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
		got, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: ex, maxLine: 100, maxEvent: 200, maxOther: 1000})
		if err != nil || got != in {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a long line fails", func(t *testing.T) {
		in := "data: x\n\ndata: " + strings.Repeat("a", 200) + "\n\n"
		ex := &exchange{}
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(iotestOneByte(in)), ex: ex, maxLine: 100, maxEvent: 200, maxOther: 1000})
		var le *limitError
		if !errors.As(err, &le) || le.Error() != "stream line exceeded 100 bytes" {
			t.Fatalf("err = %v", err)
		}
		if long, _, _ := ex.capHit(); !long {
			t.Error("the exchange does not record the long line")
		}
	})
	t.Run("non-data lines are bounded on OpenAI streams", func(t *testing.T) {
		in := strings.Repeat(": keep-alive comment\n", 100)
		ex := &exchange{}
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: ex, maxLine: 100, maxEvent: 1 << 20, maxOther: 1000, countOther: true})
		if err == nil {
			t.Fatal("no error after 2 KB of comments with a 1 KB cap")
		}
		if _, _, large := ex.capHit(); !large {
			t.Error("the exchange does not record the overflow")
		}
	})
	t.Run("data lines do not count as other lines", func(t *testing.T) {
		in := strings.Repeat("data: {\"x\":1}\n\n", 500)
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: &exchange{}, maxLine: 100, maxEvent: 200, maxOther: 100, countOther: true})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("blank lines do not count as other lines", func(t *testing.T) {
		// go-openai keeps nothing of a blank line (it trims each line).
		in := strings.Repeat("\n", 10000) + strings.Repeat("\r\n", 10000)
		_, err := readAllCapped(&lineCapReader{rc: io.NopCloser(strings.NewReader(in)), ex: &exchange{}, maxLine: 100, maxEvent: 200, maxOther: 100, countOther: true})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestLineCapReaderEvents(t *testing.T) {
	line := "data: " + strings.Repeat("a", 43) + "\n" // 50 bytes
	for _, tc := range []struct {
		name, in string
		fails    bool
	}{
		{"events under the cap pass", strings.Repeat("event: x\n"+line+line+"\n", 50), false},
		{"CRLF blank lines end events", strings.Repeat("event: x\r\n"+line+line+"\r\n", 50), false},
		{"data lines with no blank line fail", "event: x\n" + strings.Repeat(line, 5), true},
		{"a line of a space ends no event", strings.Repeat(line+" \n", 5), true},
		{"comments count", strings.Repeat(": keep-alive, this event never ends\n", 10), true},
		{"the cap counts from the last blank line", line + line + line + "\n" + line + line + line + "\n" + line + line + line + line + line, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByOne := range []bool{false, true} {
				ex := &exchange{}
				var r io.Reader = strings.NewReader(tc.in)
				if oneByOne {
					r = iotestOneByte(tc.in)
				}
				got, err := readAllCapped(&lineCapReader{rc: io.NopCloser(r), ex: ex, maxLine: 100, maxEvent: 200, maxOther: 1 << 20, countOther: true})
				_, event, _ := ex.capHit()
				if !tc.fails {
					if err != nil || got != tc.in || event {
						t.Fatalf("one by one %v: err = %v, event cap hit %v, read %d of %d bytes", oneByOne, err, event, len(got), len(tc.in))
					}
					continue
				}
				var le *limitError
				if !errors.As(err, &le) || le.Error() != "stream event exceeded 200 bytes" {
					t.Fatalf("one by one %v: err = %v", oneByOne, err)
				}
				if !event {
					t.Errorf("one by one %v: the exchange does not record the long event", oneByOne)
				}
				if len(got) >= len(tc.in) {
					t.Errorf("one by one %v: all %d bytes passed", oneByOne, len(got))
				}
			}
		})
	}
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
	if _, _, large := ex.capHit(); !large {
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

// TestDataLines reads streams as go-openai's RecvRaw did before dataLines
// replaced it: each case's payloads and how the stream ends, which the same
// body read by go-openai itself must match. (They part at an error data
// line, which RecvRaw turns into an error and dataLines returns as a
// payload for openAIStream to read: TestInBandStreamError.)
func TestDataLines(t *testing.T) {
	long := `{"choices":[{"delta":{"content":"` + strings.Repeat("x", 10000) + `"}}]}`
	for _, tc := range []struct {
		name string
		in   string
		want []string
		end  string // the error after the payloads
	}{
		{"data lines and [DONE]", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", []string{`{"a":1}`, `{"b":2}`}, "EOF"},
		{"spaces, tabs and CRLF", "  data:{\"a\":1}  \r\n\r\ndata: \t {\"b\":2}\r\n\r\n data:[DONE] \r\n", []string{`{"a":1}`, `{"b":2}`}, "EOF"},
		{"comments and event names are passed over", ": keep-alive\nevent: x\ndata: 1\n\n: again\n\ndata: [DONE]\n", []string{"1"}, "EOF"},
		{"a line longer than the buffer", "data: " + long + "\n\ndata: 2\n\ndata: [DONE]\n", []string{long, "2"}, "EOF"},
		{"no [DONE]", "data: 1\n\n", []string{"1"}, "EOF"},
		{"a last line without its newline is not read", "data: 1\n\ndata: 2", []string{"1"}, "EOF"},
		{"nothing after [DONE] is read", "data: [DONE]\n\ndata: 3\n\n", nil, "EOF"},
		{"a JSON error body", "{\n  \"error\": {\"message\": \"quota exceeded\", \"type\": \"insufficient_quota\"}\n}\n", nil, "error, quota exceeded"},
		{"an error body after data lines", "data: 1\n\n{\"error\": {\"message\": \"gone\"}}\n", []string{"1"}, "error, gone"},
		{"other lines that spell no error", "<html>\n</html>\n", nil, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDataLines(strings.NewReader(tc.in))
			got, end := readPayloads(d.next)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || end != tc.end {
				t.Errorf("dataLines: %q then %q, want %q then %q", got, end, tc.want, tc.end)
			}
			got, end = readPayloads(goOpenAIStream(t, tc.in))
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || end != tc.end {
				t.Errorf("go-openai: %q then %q, want %q then %q", got, end, tc.want, tc.end)
			}
		})
	}
}

func readPayloads(next func() ([]byte, error)) (payloads []string, end string) {
	for {
		p, err := next()
		if err != nil {
			return payloads, err.Error()
		}
		payloads = append(payloads, string(p))
	}
}

// goOpenAIStream returns go-openai's RecvRaw over a stream whose body is
// body.
func goOpenAIStream(t *testing.T, body string) func() ([]byte, error) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	cfg := openai.DefaultConfig("key")
	cfg.BaseURL = srv.URL + "/v1"
	stream, err := openai.NewClientWithConfig(cfg).CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Stream: true, Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Close() })
	return stream.RecvRaw
}

// TestContextTooLongPhrases: the refusals of a request past the model's
// context window, as providers word them, are told apart; a refusal that
// only names a context (a tool called get_context_window, a parameter
// context_length) is not one.
func TestContextTooLongPhrases(t *testing.T) {
	for _, tc := range []struct {
		code, msg string
		want      bool
	}{
		{"context_length_exceeded", "Please reduce the length of the messages.", true},
		{"", "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.", true},
		{"", "prompt is too long: 210000 tokens > 200000 maximum", true},
		{"", "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again", true},
		{"", "Your input exceeds the context window of this model. Please adjust your input and try again.", true},
		{"", "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length", true},
		{"", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", true},
		{"", "Invalid schema for function 'get_context_window': schema must be a JSON Schema of 'type: \"object\"'", false},
		{"", "Invalid value for 'context_length': expected an integer", false},
		{"", "max_tokens is too large: 999999", false},
	} {
		if got := contextTooLong(tc.code, "", tc.msg); got != tc.want {
			t.Errorf("contextTooLong(%q, %q) = %v; want %v", tc.code, tc.msg, got, tc.want)
		}
	}
}
