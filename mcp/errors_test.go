package mcp

import (
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestRefusalLogLinesAreBounded: a tool call refused for what it sent
// (here an argument's name of 200,000 bytes, which the refusal quotes) is
// logged with the error's text cut short, as REST's refusals are.
func TestRefusalLogLinesAreBounded(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{})
	s.fails(t, "list-chats", map[string]any{strings.Repeat("x", 200_000): 1}, "invalid_request")
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.300s…", len(line), line)
		}
	}
}
