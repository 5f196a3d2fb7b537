package rest_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/rest"
)

// TestEchoLogsNothing: Echo's own messages reach neither stdout, the
// protocol of `parley mcp`, nor Parley's log, which has one line per
// request in its own form. A mounted handler that sends its status twice
// makes Echo complain; the client still gets the first status.
func TestEchoLogsNothing(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	stdout := os.Stdout
	os.Stdout = pw // Echo takes its default log's writer when it is made
	s := rest.New(nil, rest.Config{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	os.Stdout = stdout
	s.Handle("/twice", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusTeapot)
	}))
	srv := httptest.NewServer(s)
	res, err := http.Get(srv.URL + "/twice")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	srv.Close() // waits for the handler, and its log line
	pw.Close()
	printed, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusAccepted {
		t.Errorf("status = %d, want the first one sent, 202", res.StatusCode)
	}
	if len(printed) != 0 {
		t.Errorf("Echo wrote to stdout: %s", printed)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=request ") || !strings.Contains(lines[0], "status=202") {
		t.Errorf("log = %q; want only the request's line, with status 202", lines)
	}
}
