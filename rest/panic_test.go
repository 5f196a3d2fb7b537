package rest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
)

// TestPanicsAreInternalErrors: a handler's panic is a 500 in the envelope,
// logged with its stack and route; one in a stream's course, once the
// stream opened, ends the stream with an internal error event and [DONE],
// as any failure does, not by stopping short, which a client would read
// as a whole reply. The handlers panic on purpose: nothing of Parley's
// does on a request a test can send.
func TestPanicsAreInternalErrors(t *testing.T) {
	var logs logtest.Buffer
	s := New(&domain.Services{}, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), KeepAlive: time.Hour})
	s.echo.GET("/panics", func(c *echo.Context) error { panic("a handler's bug") })
	s.echo.POST("/panics/stream", func(c *echo.Context) error {
		st, end := s.newStream(c)
		defer end()
		return st.run(func() (*domain.Completion, error) {
			if err := st.Start(domain.CompletionMeta{MessageID: "msg_1", Model: "m", Created: time.Now()}); err != nil {
				return nil, err
			}
			if err := st.Delta(domain.Delta{Content: "half a reply"}); err != nil {
				return nil, err
			}
			panic("a stream's bug")
		})
	})
	srv := httptest.NewServer(s)
	defer srv.Close()

	res, err := http.Get(srv.URL + "/panics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"code":"internal"`) {
		t.Errorf("a handler's panic: %d %s, want 500 internal in the envelope", res.StatusCode, body)
	}

	res, err = http.Post(srv.URL+"/panics/stream", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	events := strings.Split(strings.TrimSpace(string(body)), "\n\n")
	if len(events) < 3 || !strings.Contains(events[len(events)-3], "half a reply") ||
		!strings.Contains(events[len(events)-2], `"code":"internal"`) || events[len(events)-1] != "data: [DONE]" {
		t.Errorf("a stream's panic after a delta: %d\n%s\nwant the delta, an internal error event, [DONE]", res.StatusCode, body)
	}

	for _, want := range []string{`panic="a handler's bug"`, `panic="a stream's bug"`, "path=/panics ", "path=/panics/stream ", "panic_test.go"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q (each panic logged with its route and stack):\n%s", want, logs.String())
		}
	}
}
