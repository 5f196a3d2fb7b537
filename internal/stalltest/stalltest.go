// Package stalltest plays a client that keeps its connection but stops
// reading, or sends its request's body too slowly, for the tests that a
// stream, a response or a request cannot be held by one.
package stalltest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	body := `{"stream": true, "messages": [{"role": "user", "content": "hi"}]}`
	send(t, baseURL, fmt.Sprintf("POST /api/v1/chats/%s/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", chatID, key, len(body), body))
}

// Get sends a GET of path to the server at baseURL, on a connection with
// a small receive buffer, and never reads the answer. The connection is
// closed when the test ends.
func Get(t testing.TB, baseURL, key, path string) {
	t.Helper()
	send(t, baseURL, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, key))
}

// SlowBodyRefused checks that the server at baseURL answers a POST of
// path whose body stops coming (slowBody) with a 400 invalid_request in
// the error envelope, saying the body did not arrive within timeout, and
// does so soon after it.
func SlowBodyRefused(t *testing.T, baseURL, key, path string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	status, body := slowBody(t, baseURL, key, path)
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || status != http.StatusBadRequest || env.Error.Code != "invalid_request" {
		t.Fatalf("%d %s, want 400 invalid_request in the envelope", status, body)
	}
	if want := fmt.Sprintf("the request body did not arrive whole within %v; send it again", timeout); env.Error.Message != want {
		t.Errorf("message %q, want %q", env.Error.Message, want)
	}
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Errorf("answered after %v, want about %v", d, timeout)
	}
}

// SlowBodyAnswered is SlowBodyRefused for a request refused, or served,
// without its body being read (a 401, /healthz): net/http reads what is
// left of a body before it answers, which must not wait for the client
// past timeout. It returns the status.
func SlowBodyAnswered(t *testing.T, baseURL, key, path string, timeout time.Duration) int {
	t.Helper()
	start := time.Now()
	status, _ := slowBody(t, baseURL, key, path)
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Errorf("answered after %v, want about %v", d, timeout)
	}
	return status
}

// slowBody POSTs to path of the server at baseURL a JSON body it says is
// 1,000 bytes long and sends only the first three of, and returns the
// server's answer, waiting 10 s at most for it.
func slowBody(t testing.TB, baseURL, key, path string) (status int, body string) {
	t.Helper()
	conn := send(t, baseURL, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{\"a", path, key))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a body that stopped coming: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// send dials the server at baseURL with a small receive buffer and writes
// req; the connection is closed when the test ends.
func send(t testing.TB, baseURL, req string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn
}
