package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestProgressBeforeResult runs many streamed completions at once on one
// session, over the transports whose sessions share one stream among their
// calls (stdio, HTTP+SSE), with a client that reads slowly. Read in the
// order the messages arrive on the wire, every progress notification of a
// call must come before that call's result: clients such as the TypeScript
// SDK drop progress that comes after. The client reads nothing for a while
// after sending the calls, so that the session's queues fill and calls end
// while their notifications still wait behind other calls'.
func TestProgressBeforeResult(t *testing.T) {
	for _, over := range []string{overStdio, overSSE} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			chat, err := e.svcs.Chats.Create(e.ctx("editor"), domain.ChatCreate{ProjectID: e.project.ID,
				AIProviderID: e.provider.ID, Name: "progress"})
			must(t, err)
			// Deltas of 1 KiB: the calls' notifications outgrow what
			// the small socket buffers of rawSSE's stream hold (stdio's
			// pipes hold nothing).
			deltas := make([]string, 40)
			for i := range deltas {
				deltas[i] = fmt.Sprintf("d%02d:%s|", i, strings.Repeat("x", 1<<10))
			}
			e.upstream.reply(deltas...)

			var w *rawWire
			if over == overStdio {
				w = e.rawStdio()
			} else {
				w = e.rawSSE()
			}
			w.initialize(t)

			const calls = 20
			tokens := map[string]int{} // progress token → call
			for i := range calls {
				// Tokens are strings and numbers, as clients send both.
				var token any = fmt.Sprintf("tok-%d", i)
				name, args := "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("together")}
				if i%2 == 1 {
					token = 1000 + i
					name, args = "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("together")}
				}
				tokens[fmt.Sprint(token)] = i
				w.send(t, obj{"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
					"params": obj{"name": name, "arguments": args, "_meta": obj{"progressToken": token}}})
			}

			time.Sleep(1500 * time.Millisecond) // the slow reader
			got := make([]int, calls)           // progress notifications read, by call
			late := make([]int, calls)          // progress notifications read after the call's result
			answered := make([]bool, calls)
			for left := calls; left > 0; {
				m := w.next(t)
				switch {
				case m.Method == "notifications/progress":
					i, ok := tokens[fmt.Sprint(m.Params.ProgressToken)]
					if !ok {
						t.Fatalf("progress for unknown token %v", m.Params.ProgressToken)
					}
					if answered[i] {
						late[i]++
						continue
					}
					got[i]++
					if want := float64(got[i]); m.Params.Progress != want || m.Params.Message != deltas[got[i]-1] {
						t.Fatalf("call %d: progress %v with message %.8q, want %v with %.8q", i, m.Params.Progress, m.Params.Message, want, deltas[got[i]-1])
					}
				case m.Method == "" && m.ID != nil:
					i := *m.ID - 1
					if i < 0 || i >= calls || answered[i] {
						t.Fatalf("unexpected response to id %d", *m.ID)
					}
					answered[i] = true
					left--
					if m.Result == nil || m.Result.IsError || m.Result.StructuredContent.Content != strings.Join(deltas, "") {
						t.Errorf("call %d: result %.200s is not the whole reply", i, m.Raw)
					}
					if got[i] != len(deltas) {
						t.Errorf("call %d: %d of %d deltas arrived before its result", i, got[i], len(deltas))
					}
				}
			}
			// Notifications still on their way after the last result
			// have already failed their call's count. The ones read
			// late are reported once per call.
			for i, n := range late {
				if n > 0 {
					t.Errorf("call %d: %d progress notifications arrived after the call's result", i, n)
				}
			}
		})
	}
}

// rawWire is a client session that reads the server's messages one at a
// time, in the order they were written, and only when the test asks.
type rawWire struct {
	write func(msg []byte) error
	read  func() ([]byte, error) // the next message
}

// wireMsg is what the test reads of a message from the server.
type wireMsg struct {
	ID     *int   `json:"id"`
	Method string `json:"method"`
	Params struct {
		ProgressToken any     `json:"progressToken"`
		Progress      float64 `json:"progress"`
		Message       string  `json:"message"`
	} `json:"params"`
	Result *struct {
		IsError           bool `json:"isError"`
		StructuredContent struct {
			Content string `json:"content"`
		} `json:"structuredContent"`
	} `json:"result"`
	Raw []byte `json:"-"`
}

func (w *rawWire) send(t *testing.T, msg obj) {
	t.Helper()
	b, err := json.Marshal(msg)
	must(t, err)
	must(t, w.write(b))
}

func (w *rawWire) next(t *testing.T) wireMsg {
	t.Helper()
	b, err := w.read()
	if err != nil {
		t.Fatalf("reading the next message: %v", err)
	}
	var m wireMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("message %q: %v", b, err)
	}
	m.Raw = b
	return m
}

// responses reads the rest of w's messages in a goroutine of their own and
// passes on the responses among them; it closes the channel when w ends.
func (w *rawWire) responses() <-chan wireMsg {
	out := make(chan wireMsg, 32)
	go func() {
		defer close(out)
		for {
			b, err := w.read()
			if err != nil {
				return
			}
			var m wireMsg
			if json.Unmarshal(b, &m) == nil && m.ID != nil && m.Method == "" {
				m.Raw = b
				out <- m
			}
		}
	}()
	return out
}

// initialize opens the session as the protocol asks.
func (w *rawWire) initialize(t *testing.T) {
	t.Helper()
	w.send(t, obj{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": obj{"protocolVersion": "2025-06-18",
		"capabilities": obj{}, "clientInfo": obj{"name": "parley-test", "version": "1"}}})
	for {
		if m := w.next(t); m.ID != nil && *m.ID == 0 {
			if m.Result == nil {
				t.Fatalf("initialize: %s", m.Raw)
			}
			break
		}
	}
	w.send(t, obj{"jsonrpc": "2.0", "method": "notifications/initialized"})
}

// rawStdio serves a stdio session as the editor over pipes, which hold
// nothing: the server's writes wait for the test to read.
func (e *env) rawStdio() *rawWire {
	stdioMu.Lock()
	serverIn, clientOut := io.Pipe()
	clientIn, serverOut := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeStdio(ctx, e.server(Options{}), Fixed(e.principals["editor"]), 0, serverIn, serverOut, newTestLogger(e.logs))
	}()
	// A test that fails stops reading: closing the reading end releases
	// the server's blocked writes.
	stop := time.AfterFunc(time.Minute, func() { _ = clientIn.CloseWithError(fmt.Errorf("the test took over a minute")) })
	e.t.Cleanup(func() {
		stop.Stop()
		_ = clientOut.Close()
		_ = clientIn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			e.t.Errorf("ServeStdio did not return after its input closed")
		}
		stdioMu.Unlock()
	})
	r := bufio.NewReader(clientIn)
	return &rawWire{
		write: func(msg []byte) error {
			_, err := clientOut.Write(append(msg, '\n'))
			return err
		},
		read: func() ([]byte, error) { return r.ReadBytes('\n') },
	}
}

// rawSSE opens an HTTP+SSE session as the editor and reads its event
// stream. The server's sockets send, and the client's receive, with small
// buffers, as over a slow network: the server's writes soon wait for the
// test to read.
func (e *env) rawSSE() *rawWire {
	t := e.t
	x := NewSSE(e.server(Options{}), e.svcs.Users.Authenticate, Limits{}, "", nil)
	mux := http.NewServeMux()
	mux.Handle("/sse", x.Stream)
	mux.Handle("/message", x.Message)
	hs := httptest.NewUnstartedServer(mux)
	hs.Listener = smallBuffers{hs.Listener}
	hs.Start()
	t.Cleanup(hs.Close)
	client := hs.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	auth := "Bearer " + e.keys["editor"]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/sse", nil)
	must(t, err)
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	must(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sse: %s", resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	// event reads one event: its name and data.
	event := func() (name string, data []byte, err error) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return "", nil, err
			}
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case len(line) == 0 && data != nil:
				return name, data, nil
			case bytes.HasPrefix(line, []byte("event: ")):
				name = string(line[len("event: "):])
			case bytes.HasPrefix(line, []byte("data: ")):
				data = append(data, line[len("data: "):]...)
			}
		}
	}
	name, endpoint, err := event()
	if err != nil || name != "endpoint" {
		t.Fatalf("first event %q %q: %v", name, endpoint, err)
	}
	return &rawWire{
		write: func(msg []byte) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+string(endpoint), bytes.NewReader(msg))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", auth)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("POST %s: %s", endpoint, resp.Status)
			}
			return nil
		},
		read: func() ([]byte, error) {
			for {
				name, data, err := event()
				if err != nil || name == "message" {
					return data, err
				}
			}
		},
	}
}

// smallBuffer is the size of rawSSE's socket buffers.
const smallBuffer = 4 << 10

// smallBuffers gives the connections it accepts small send buffers.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(smallBuffer)
	}
	return c, err
}

// TestProgressWhileTheModelIsQuiet: a streamed completion keeps sending
// progress while no text comes: a notification without a message for each
// piece of the model's reasoning, and one after each heartbeat of quiet
// (here a model that takes a second to answer at all). A client whose
// timeout restarts on progress (the TypeScript SDK's
// resetTimeoutOnProgress) timed out and cancelled such calls, as no
// notification came before the first text. The messages still join into
// the reply.
func TestProgressWhileTheModelIsQuiet(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat, err := e.svcs.Chats.Create(e.ctx("editor"), domain.ChatCreate{ProjectID: e.project.ID, AIProviderID: e.provider.ID, Name: "quiet"})
	must(t, err)
	for _, tc := range []struct {
		name string
		b    llmtest.Behavior
	}{
		{"thinking", llmtest.Behavior{Reasoning: strings.Repeat("hmm ", 10), ChunkDelay: 100 * time.Millisecond, Reply: "done"}},
		{"slow to answer", llmtest.Behavior{Delay: time.Second, Reply: "done"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.upstream.Script(func(int, llmtest.Request) llmtest.Behavior { return tc.b })
			s := e.connect(overHTTP, "editor", Options{ProgressHeartbeat: 200 * time.Millisecond})
			res, err := s.callErr(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("think")}, "tok")
			if err != nil || res.IsError {
				t.Fatalf("call failed: %v %v", err, res)
			}
			var joined strings.Builder
			quiet := 0
			for i, n := range s.notes("tok") {
				if n.Progress != float64(i+1) {
					t.Errorf("notification %d has progress %v", i+1, n.Progress)
				}
				if n.Message == "" {
					quiet++
				}
				joined.WriteString(n.Message)
			}
			if quiet < 3 || joined.String() != "done" {
				t.Errorf("%d notifications without a message before the reply, messages %q; want 3 or more, and \"done\"", quiet, joined.String())
			}
		})
	}
}
