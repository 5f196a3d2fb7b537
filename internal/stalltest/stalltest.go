// Package stalltest plays a client that keeps its connection but stops
// reading, for the tests that a stream cannot be held by one.
package stalltest

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/parleyhq/parley/llm/llmtest"
)

// Flood is an upstream reply of 20 MB of text: far more than the sockets
// between the server and a client that does not read can hold, so that
// the server's writes to it block.
func Flood() llmtest.Behavior {
	deltas := make([]string, 100_000)
	for i := range deltas {
		deltas[i] = strings.Repeat("x", 200) + " "
	}
	return llmtest.Behavior{Deltas: deltas}
}

// Completion asks the server at baseURL (http://host:port) for a streamed
// completion of chatID, on a connection with a small receive buffer, and
// never reads the answer. The connection is closed when the test ends.
func Completion(t testing.TB, baseURL, key, chatID string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	body := `{"stream": true, "messages": [{"role": "user", "content": "hi"}]}`
	if _, err := fmt.Fprintf(conn, "POST /api/v1/chats/%s/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", chatID, key, len(body), body); err != nil {
		t.Fatal(err)
	}
}
