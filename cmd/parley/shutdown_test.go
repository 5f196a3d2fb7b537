package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/internal/stalltest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/mcp"
	"github.com/parleyhq/parley/store"
)

// api sends a JSON request to the running server and decodes the answer,
// failing the test unless the status is want.
func api(t *testing.T, s *started, key, method, path string, want int, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, s.url+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if res.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d: %v", method, path, res.StatusCode, want, out)
	}
	return out
}

// seedChat creates a project, a provider on the fake upstream and a chat,
// returning the chat's id.
func seedChat(t *testing.T, s *started, key string, up *llmtest.Server) string {
	t.Helper()
	p := api(t, s, key, "POST", "/api/v1/projects", 201, map[string]any{"name": "shutdown"})["id"].(string)
	prov := api(t, s, key, "POST", "/api/v1/ai-providers", 201, map[string]any{
		"projectId": p, "name": "fake", "type": "openai-compatible", "baseUrl": up.URL(),
		"defaultModel": "fake-model", "apiKey": "sk-shutdown-test-0123456789",
	})["id"].(string)
	return api(t, s, key, "POST", "/api/v1/chats", 201, map[string]any{"projectId": p, "aiProviderId": prov, "name": "c"})["id"].(string)
}

// event is one data event of a stream and when it arrived.
type event struct {
	raw  string
	data map[string]any
	at   time.Time
}

// openStream starts a streamed completion and delivers its data events on
// the returned channel, which is closed at the end of the stream; a read
// that fails (the connection cut) ends it with a "read error: …" event.
func openStream(t *testing.T, s *started, key, chatID, prompt string) <-chan event {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"stream": true, "messages": []any{map[string]any{"role": "user", "content": prompt}}})
	req, _ := http.NewRequest("POST", s.url+"/api/v1/chats/"+chatID+"/completions", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream answered %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	ch := make(chan event, 1024)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			payload, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			ev := event{raw: payload, at: time.Now()}
			if payload != "[DONE]" {
				_ = json.Unmarshal([]byte(payload), &ev.data)
			}
			ch <- ev
		}
		if err := sc.Err(); err != nil {
			ch <- event{raw: "read error: " + err.Error(), at: time.Now()}
		}
	}()
	return ch
}

// take waits for n events of the stream.
func take(t *testing.T, ch <-chan event, n int, within time.Duration) []event {
	t.Helper()
	var out []event
	deadline := time.After(within)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended after %d events, want %d: %v", len(out), n, out)
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("only %d events within %v, want %d", len(out), within, n)
		}
	}
	return out
}

// drain reads the stream to its end.
func drain(t *testing.T, ch <-chan event, within time.Duration) []event {
	t.Helper()
	var out []event
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("the stream did not end within %v; got %d events", within, len(out))
		}
	}
}

// waitExit waits for the process to exit after a signal.
func waitExit(t *testing.T, s *started, within time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("parley did not exit within %v:\n%s", within, s.stderr.String())
		return nil
	}
}

// sqliteIn is the database `parley serve` keeps in dir by default.
func sqliteIn(dir string) string { return "sqlite:" + filepath.Join(dir, "data", "parley.db") }

// openStopped opens the database a stopped server left, dsn being
// sqliteIn's or a PostgreSQL URL, for the test's length.
func openStopped(t *testing.T, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// usageOutcome returns the outcome and completion tokens of one usage
// record in the database dsn a stopped server left.
func usageOutcome(t *testing.T, dsn, id string) (outcome string, completionTokens int) {
	t.Helper()
	st := openStopped(t, dsn)
	row := st.DB().Raw("SELECT outcome, completion_tokens FROM usage_records WHERE id = ?", id).Row()
	if err := row.Scan(&outcome, &completionTokens); err != nil {
		t.Fatalf("no usage record %s after shutdown: %v", id, err)
	}
	return outcome, completionTokens
}

// fixture is `parley serve` on a fresh data directory, with an admin key
// and a chat whose provider is a fake upstream.
type fixture struct {
	*started
	up             *llmtest.Server
	dir, key, chat string
}

// serveWithChat starts the fixture; env adds settings.
func serveWithChat(t *testing.T, env ...string) fixture {
	t.Helper()
	f := fixture{up: llmtest.NewServer(t), dir: t.TempDir(), key: "pk_test_" + strings.Repeat("k", 30)}
	f.started = serve(t, f.dir, append([]string{"PARLEY_BOOTSTRAP_ADMIN_KEY=" + f.key, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true"}, env...)...)
	f.chat = seedChat(t, f.started, f.key, f.up)
	return f
}

// chatOutcomes returns the outcomes of the usage records of chat, in the
// database dsn a stopped server left.
func chatOutcomes(t *testing.T, dsn, chat string) []string {
	t.Helper()
	var outcomes []string
	if err := openStopped(t, dsn).DB().Raw("SELECT outcome FROM usage_records WHERE chat_id = ? ORDER BY outcome", chat).Scan(&outcomes).Error; err != nil {
		t.Fatal(err)
	}
	return outcomes
}

// storedTurn returns the messages of conversation conv, as "role: content"
// in order, in the database dsn a stopped server left.
func storedTurn(t *testing.T, dsn, conv string) []string {
	t.Helper()
	var rows []struct{ Role, Content string }
	if err := openStopped(t, dsn).DB().Raw("SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY seq", conv).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.Role+": "+r.Content)
	}
	return out
}

// answer is a JSON completion's response, or the error that stopped it.
type answer struct {
	status int
	body   map[string]any
	err    error
}

// postCompletion sends a JSON completion in chat as key, in the
// background, and delivers its answer on the channel.
func postCompletion(s *started, key, chat, content string) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		b, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{"role": "user", "content": content}}})
		req, _ := http.NewRequest("POST", s.url+"/api/v1/chats/"+chat+"/completions", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer res.Body.Close()
		a := answer{status: res.StatusCode}
		a.err = json.NewDecoder(res.Body).Decode(&a.body)
		done <- a
	}()
	return done
}

// waitRequest waits until the fake upstream has more than before requests.
func waitRequest(t *testing.T, up *llmtest.Server, before int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); up.Count() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the upstream")
		}
	}
}

// mcpClient starts and initializes c.
func mcpClient(t *testing.T, c *client.Client) *client.Client {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcpgo.Implementation{Name: "shutdown-test", Version: "1"}
	if _, err := c.Initialize(context.Background(), init); err != nil {
		t.Fatal(err)
	}
	return c
}

// hangingCall is a create-chat-completion-for-chat call in chat.
func hangingCall(chat string) mcpgo.CallToolRequest { return chatCall(chat, "hang") }

// TestShutdownLetsStreamsFinish sends SIGTERM while a stream and a JSON
// completion run: new connections are refused at once, both finish whole
// within the grace period, their turns are stored, the usage is flushed,
// and the exit is clean.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=5s")
	s, up, dir, key, chat := f.started, f.up, f.dir, f.key, f.chat

	// Sixteen words: seventeen deltas, about 2s of stream at 100ms an event.
	const prompt = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
	up.Enqueue(llmtest.Behavior{ChunkDelay: 100 * time.Millisecond})
	ch := openStream(t, s, key, chat, prompt)
	head := take(t, ch, 3, 10*time.Second)

	// A JSON completion is in flight too: the upstream has it, and answers
	// after 1.5s.
	up.Enqueue(llmtest.Behavior{Delay: 1500 * time.Millisecond})
	before := up.Count()
	jsonDone := postCompletion(s, key, chat, "in flight")
	waitRequest(t, up, before)

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes at once: new connections are refused while the
	// stream goes on.
	host := strings.TrimPrefix(s.url, "http://")
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			conn.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNRESET) {
			continue // a connection caught in the backlog as the listener closed
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial after SIGTERM: %v, want connection refused", err)
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("new connections were still accepted 2s after SIGTERM")
	}
	refusedAt := time.Now()

	events := append(head, drain(t, ch, 10*time.Second)...)
	n := len(events)
	if n < 4 || events[n-1].raw != "[DONE]" {
		t.Fatalf("the stream did not end with [DONE]: %v", events)
	}
	if !events[n-1].at.After(refusedAt) {
		t.Error("the stream ended before new connections were refused; the test proves nothing")
	}
	var text strings.Builder
	for _, ev := range events[:n-1] {
		if ev.data["error"] != nil {
			t.Fatalf("the stream got an error within the grace period: %s", ev.raw)
		}
		for _, c := range ev.data["choices"].([]any) {
			if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
				text.WriteString(s)
			}
		}
	}
	if got := text.String(); got != llmtest.EchoReply(prompt) {
		t.Errorf("streamed text = %q, want the whole reply", got)
	}
	usage, _ := events[n-2].data["usage"].(map[string]any)
	if usage == nil || usage["completion_tokens"] != float64(len(llmtest.Deltas(llmtest.EchoReply(prompt)))) {
		t.Errorf("last chunk usage = %v", usage)
	}

	a := <-jsonDone
	if a.err != nil || a.status != 200 {
		t.Fatalf("the JSON completion in flight at SIGTERM = %d %v, %v", a.status, a.body, a.err)
	}
	if msg := a.body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any); msg["content"] != llmtest.EchoReply("in flight") {
		t.Errorf("the JSON completion in flight at SIGTERM answered %v", msg)
	}

	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}
	// The usage of the completion was flushed before exit.
	msgID, _ := events[0].data["messageId"].(string)
	outcome, tokens := usageOutcome(t, sqliteIn(dir), msgID)
	if outcome != "ok" || tokens != int(usage["completion_tokens"].(float64)) {
		t.Errorf("usage record = %s with %d completion tokens, want ok with %v", outcome, tokens, usage["completion_tokens"])
	}
	// And both turns were stored, as a continuation after the restart
	// would read them.
	streamConv, _ := events[0].data["conversationId"].(string)
	jsonConv, _ := a.body["conversationId"].(string)
	for conv, prompt := range map[string]string{streamConv: prompt, jsonConv: "in flight"} {
		want := []string{"user: " + prompt, "assistant: " + llmtest.EchoReply(prompt)}
		if got := storedTurn(t, sqliteIn(dir), conv); !slices.Equal(got, want) {
			t.Errorf("conversation %q after shutdown holds %q, want %q", conv, got, want)
		}
	}
}

func TestShutdownEndsStreamsAfterGrace(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=1s")
	s, up, dir, key, chat := f.started, f.up, f.dir, f.key, f.chat

	// Twenty words at 500ms an event: a stream of over 10s.
	words := make([]string, 20)
	for i := range words {
		words[i] = fmt.Sprint("w", i)
	}
	up.Enqueue(llmtest.Behavior{ChunkDelay: 500 * time.Millisecond})
	streamN := up.Count()
	ch := openStream(t, s, key, chat, strings.Join(words, " "))
	head := take(t, ch, 2, 10*time.Second)

	// And a JSON completion whose upstream never answers.
	up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	before := up.Count()
	jsonc := postCompletion(s, key, chat, "hang")
	waitRequest(t, up, before)

	sigterm := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	events := append(head, drain(t, ch, 10*time.Second)...)
	n := len(events)
	if n < 3 || events[n-1].raw != "[DONE]" {
		t.Fatalf("the stream did not end with [DONE]: %v", events)
	}
	e, _ := events[n-2].data["error"].(map[string]any)
	if e == nil || e["code"] != "unavailable" {
		t.Fatalf("event before [DONE] = %s, want an unavailable error", events[n-2].raw)
	}
	if msg, _ := e["message"].(string); !strings.Contains(msg, "shutting down") {
		t.Errorf("error message = %q, want it to say the server is shutting down", msg)
	}
	if after := events[n-2].at.Sub(sigterm); after < 900*time.Millisecond || after > 3*time.Second {
		t.Errorf("the error event came %v after SIGTERM, want about the 1s grace", after)
	}
	// The JSON completion gets the same answer, as a 503 in the envelope.
	select {
	case a := <-jsonc:
		e, _ := a.body["error"].(map[string]any)
		if a.status != http.StatusServiceUnavailable || e == nil || e["code"] != "unavailable" {
			t.Errorf("the JSON completion ended by the shutdown = %d %v, want 503 unavailable", a.status, a.body)
		} else if msg, _ := e["message"].(string); !strings.Contains(msg, "shutting down") {
			t.Errorf("error message = %q, want it to say the server is shutting down", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the JSON completion got no answer within 10s of SIGTERM (1s grace)")
	}
	for _, n := range []int{streamN, before} {
		if !up.WaitCanceledN(n, 2*time.Second) {
			t.Errorf("upstream call %d was not cancelled", n)
		}
	}
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}
	// The ended completions are recorded too, as ended by the server.
	msgID, _ := events[0].data["messageId"].(string)
	if outcome, _ := usageOutcome(t, sqliteIn(dir), msgID); outcome != "interrupted" {
		t.Errorf("a stream ended by the shutdown is recorded with outcome %q, want interrupted", outcome)
	}
	if got := chatOutcomes(t, sqliteIn(dir), chat); len(got) != 2 || got[0] != "interrupted" || got[1] != "interrupted" {
		t.Errorf("the chat's usage outcomes = %v, want both completions interrupted", got)
	}
	// The provider had both prompts, the JSON completion's before any of
	// its reply: their tokens are estimated, not left at 0.
	var fewest int64
	if err := openStopped(t, sqliteIn(dir)).DB().Raw("SELECT min(prompt_tokens) FROM usage_records WHERE chat_id = ?", chat).Row().Scan(&fewest); err != nil || fewest == 0 {
		t.Errorf("the interrupted completions' fewest prompt tokens = %d (%v); want them estimated", fewest, err)
	}
	// Ending them is what a shutdown does, not a fault to page anyone for:
	// each, the stream as the JSON completion, is logged as what happened.
	logs := s.stderr.String()
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "stream failed") ||
		strings.Count(logs, `level=WARN msg="request ended by shutdown"`) != 2 {
		t.Errorf("the shutdown's logs hold an error, or do not say of both requests that it ended them:\n%s", logs)
	}
}

// TestShutdownFlushesUsageOnPostgres: on PostgreSQL as on SQLite, SIGTERM
// while a stream and a JSON completion run lets the stream finish within
// the grace period, its turn stored, and ends the JSON completion at its
// end; the usage of both, the last recorded just before the exit, is in
// the database once the process exited 0.
func TestShutdownFlushesUsageOnPostgres(t *testing.T) {
	dsn := dbtest.PostgresURL(t)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	f := serveWithChat(t, "PARLEY_DATABASE_URL="+dsn, "PARLEY_SECRET_KEY="+base64.StdEncoding.EncodeToString(secret), "PARLEY_SHUTDOWN_GRACE=2s")
	s, up, key, chat := f.started, f.up, f.key, f.chat
	if !strings.Contains(s.stderr.String(), "database=postgres") {
		t.Fatalf("parley serve is not on PostgreSQL:\n%s", s.stderr.String())
	}

	const prompt = "one two three four five six"
	up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if strings.Contains(string(r.RawBody), "hang") {
			return llmtest.Behavior{Fault: llmtest.FaultHang}
		}
		return llmtest.Behavior{ChunkDelay: 100 * time.Millisecond}
	})
	ch := openStream(t, s, key, chat, prompt)
	head := take(t, ch, 2, 10*time.Second)
	before := up.Count()
	jsonc := postCompletion(s, key, chat, "hang")
	waitRequest(t, up, before)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	events := append(head, drain(t, ch, 10*time.Second)...)
	if n := len(events); events[n-1].raw != "[DONE]" || events[n-2].data["usage"] == nil {
		t.Fatalf("the stream did not finish within the grace period: %v", events)
	}
	select {
	case a := <-jsonc:
		if a.status != http.StatusServiceUnavailable {
			t.Errorf("the JSON completion ended by the shutdown = %d %v, want 503", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the JSON completion got no answer within 10s of SIGTERM (2s grace)")
	}
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}

	if got := chatOutcomes(t, dsn, chat); !slices.Equal(got, []string{"interrupted", "ok"}) {
		t.Errorf("the chat's usage outcomes on PostgreSQL = %v, want [interrupted ok]", got)
	}
	msgID, _ := events[0].data["messageId"].(string)
	if outcome, tokens := usageOutcome(t, dsn, msgID); outcome != "ok" || tokens != len(llmtest.Deltas(llmtest.EchoReply(prompt))) {
		t.Errorf("the stream's usage record = %s with %d completion tokens", outcome, tokens)
	}
	conv, _ := events[0].data["conversationId"].(string)
	if got, want := storedTurn(t, dsn, conv), []string{"user: " + prompt, "assistant: " + llmtest.EchoReply(prompt)}; !slices.Equal(got, want) {
		t.Errorf("the stream's conversation on PostgreSQL holds %q, want %q", got, want)
	}
}

// TestSecondSignalEndsTheGrace: a second SIGINT or SIGTERM during the
// grace period (Ctrl-C twice) ends it at once: the stream and the JSON
// completion still running are ended as when it runs out (an unavailable
// error event, then [DONE]; a 503), their usage is flushed, as
// interrupted, and the exit is 0, long before the 60s grace is over.
func TestSecondSignalEndsTheGrace(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=60s")
	s, up, dir, key, chat := f.started, f.up, f.dir, f.key, f.chat

	// Thirty words at 1s an event: a stream of half a minute.
	up.Enqueue(llmtest.Behavior{ChunkDelay: time.Second})
	ch := openStream(t, s, key, chat, strings.Repeat("word ", 30))
	head := take(t, ch, 2, 10*time.Second)
	up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	before := up.Count()
	jsonc := postCompletion(s, key, chat, "hang")
	waitRequest(t, up, before)

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.stderr.String(), "shutting down"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown logged within 10s of SIGTERM:\n%s", s.stderr.String())
		}
	}
	// The first signal started the grace period: the stream goes on.
	if ev := take(t, ch, 1, 5*time.Second)[0]; ev.data["error"] != nil {
		t.Fatalf("the stream got an error within the grace period: %s", ev.raw)
	}
	select {
	case a := <-jsonc:
		t.Fatalf("the JSON completion was answered within the grace period: %d %v", a.status, a.body)
	default:
	}

	second := time.Now()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	events := append(head, drain(t, ch, 10*time.Second)...)
	n := len(events)
	if n < 3 || events[n-1].raw != "[DONE]" {
		t.Fatalf("the stream did not end with [DONE]: %v", events)
	}
	if e, _ := events[n-2].data["error"].(map[string]any); e == nil || e["code"] != "unavailable" {
		t.Fatalf("event before [DONE] = %s, want an unavailable error", events[n-2].raw)
	}
	if after := events[n-2].at.Sub(second); after > 3*time.Second {
		t.Errorf("the error event came %v after the second signal, want at once", after)
	}
	select {
	case a := <-jsonc:
		if e, _ := a.body["error"].(map[string]any); a.status != http.StatusServiceUnavailable || e == nil || e["code"] != "unavailable" {
			t.Errorf("the JSON completion ended by the second signal = %d %v, want 503 unavailable", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the JSON completion got no answer within 10s of the second signal")
	}
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after the second signal: %v\n%s", err, s.stderr.String())
	}
	if got := chatOutcomes(t, sqliteIn(dir), chat); len(got) != 2 || got[0] != "interrupted" || got[1] != "interrupted" {
		t.Errorf("the chat's usage outcomes = %v, want both completions interrupted", got)
	}
	if logs := s.stderr.String(); !strings.Contains(logs, "second signal") {
		t.Errorf("the logs do not say the second signal ended the grace period:\n%s", logs)
	}
}

// TestShutdownCutsAStreamItsClientDoesNotRead: a client that keeps its
// connection but stops reading blocks the stream's write; when the grace
// period is over, that write is cut (a moment later, so that a stream's
// last events still reach a client that reads), the handler returns, and
// the stream's usage is stored as interrupted before the exit, rather
// than lost with a handler still blocked when the server stops waiting.
func TestShutdownCutsAStreamItsClientDoesNotRead(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=1s")
	s, up, dir, key, chat := f.started, f.up, f.dir, f.key, f.chat

	up.Enqueue(stalltest.Flood())
	before := up.Count()
	stalltest.Completion(t, s.url, key, chat)
	waitRequest(t, up, before)
	time.Sleep(500 * time.Millisecond) // the sockets' buffers fill

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}
	if got := chatOutcomes(t, sqliteIn(dir), chat); !slices.Equal(got, []string{"interrupted"}) {
		t.Errorf("the unread stream's usage outcomes = %v, want [interrupted]", got)
	}
}

// TestThirdSignalExitsAtOnce checks that an operator who signals a third
// time is not kept waiting: with the database locked by another process,
// the usage flush of the shutdown waits on it (up to 10s), past the second
// signal; the third ends the process at once, with a non-zero status and
// a line saying that unstored usage is lost.
func TestThirdSignalExitsAtOnce(t *testing.T) {
	f := serveWithChat(t)
	s, key, chat := f.started, f.key, f.chat
	provider := api(t, s, key, "GET", "/api/v1/chats/"+chat, 200, nil)["aiProviderId"].(string)

	// Another process's write transaction: reads go on (a stateless
	// completion writes nothing but its usage), the usage write waits.
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(f.dir, "data", "parley.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := st.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if _, err := lock.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	api(t, s, key, "POST", "/api/v1/chats/completions", 200, map[string]any{
		"aiProviderId": provider, "messages": []any{map[string]any{"role": "user", "content": "hi"}},
	})

	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		if err := s.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The logs, not Wait, tell whether it ended: Wait closes the stderr
	// pipe, and with it what the test has yet to read of the last lines.
	time.Sleep(time.Second)
	if logs := s.stderr.String(); strings.Contains(logs, "msg=stopped") || !strings.Contains(logs, "second signal") {
		t.Fatalf("parley should still wait on the locked database a second after the second signal:\n%s", logs)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(s.stderr.String(), "third signal"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing logged of the third signal within 3s:\n%s", s.stderr.String())
		}
	}
	var ee *exec.ExitError
	if err := waitExit(t, s, 3*time.Second); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit after the third signal: %v, want status 1", err)
	}
	if logs := s.stderr.String(); !strings.Contains(logs, "usage records not yet stored are lost") {
		t.Errorf("the logs do not say what the third signal lost:\n%s", logs)
	}
}

// TestUpstreamSettingsFromEnv checks that the operator sets how upstream
// calls are retried and timed out: three retries (the default is two)
// turn three 500s and a success into a 200, and a response timeout of
// 300ms turns a slow (non-stream) upstream into a 504. A bad value stops
// the start.
func TestUpstreamSettingsFromEnv(t *testing.T) {
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "PARLEY_ADDR=127.0.0.1:0", "PARLEY_DATA_DIR="+t.TempDir(), "PARLEY_UPSTREAM_RETRIES=eleven")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "PARLEY_UPSTREAM_RETRIES must be a number from 0 to 10") {
		t.Errorf("serve with PARLEY_UPSTREAM_RETRIES=eleven: %v\n%s", err, out)
	}

	f := serveWithChat(t, "PARLEY_UPSTREAM_RETRIES=3", "PARLEY_UPSTREAM_RETRY_DELAY=1ms", "PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT=300ms", "PARLEY_UPSTREAM_RESPONSE_TIMEOUT=300ms")
	s, up, key, chat := f.started, f.up, f.key, f.chat
	path := "/api/v1/chats/" + chat + "/completions"
	body := map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}

	for range 3 {
		up.Enqueue(llmtest.Behavior{Status: 500})
	}
	before := up.Count()
	api(t, s, key, "POST", path, 200, body)
	if got := up.Count() - before; got != 4 {
		t.Errorf("the upstream got %d requests, want 4 (three retries)", got)
	}

	up.Enqueue(llmtest.Behavior{Delay: 3 * time.Second})
	started := time.Now()
	res := api(t, s, key, "POST", path, 504, body)
	if e, _ := res["error"].(map[string]any); e["code"] != "upstream_timeout" {
		t.Errorf("slow upstream = %v, want upstream_timeout", res)
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Errorf("the 504 took %v; the response timeout is 300ms", took)
	}
	s.stop(t)
}

// TestShutdownEndsMCPCallsAfterGrace: an MCP tool call still running when
// the grace period ends gets an error result saying the server is
// shutting down, so the agent knows to call again, and the exit is clean.
func TestShutdownEndsMCPCallsAfterGrace(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=1s")
	s, up, key, chat := f.started, f.up, f.key, f.chat

	tr, err := transport.NewStreamableHTTP(s.url+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	c := mcpClient(t, client.NewClient(tr))
	callEndedByShutdown(t, s, up, c, chat)
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}
	endedByShutdownLogged(t, s.stderr.String())
}

// callEndedByShutdown makes a tool call that hangs upstream, sends s
// SIGTERM once the call reached the upstream, and checks that the call
// ends, within 10s, in an error result saying the server is shutting down.
func callEndedByShutdown(t *testing.T, s *started, up *llmtest.Server, c *client.Client, chat string) {
	t.Helper()
	up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	before := up.Count()
	type result struct {
		res *mcpgo.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.CallTool(context.Background(), hangingCall(chat))
		done <- result{res, err}
	}()
	waitRequest(t, up, before)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.res == nil || !r.res.IsError {
			t.Fatalf("the call ended by the shutdown = %+v, %v; want an error result", r.res, r.err)
		}
		if text := fmt.Sprint(r.res.Content); !strings.Contains(text, "unavailable:") || !strings.Contains(text, "shutting down") {
			t.Errorf("the call ended by the shutdown says %s; want unavailable, shutting down", text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call got no result within 10s of SIGTERM (1s grace)")
	}
}

// endedByShutdownLogged checks that the logs say a tool call was ended by
// the shutdown, as a warning (what a deploy does, not a fault), and hold
// no error.
func endedByShutdownLogged(t *testing.T, logs string) {
	t.Helper()
	if strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, `level=WARN msg="mcp tool call ended by shutdown"`) {
		t.Errorf("the logs hold an error, or do not warn that the shutdown ended the call:\n%s", logs)
	}
}

// TestShutdownEndsSSECallsAfterGrace: over MCP's older HTTP+SSE transport
// a tool call runs apart from the request that carried it, and its result
// travels on the session's event stream. One still running when the grace
// period ends is ended too: the upstream call is cancelled, the client
// gets the error result saying the server is shutting down (the stream
// closes only once it is written), and the usage is recorded, as
// interrupted, before the exit.
func TestShutdownEndsSSECallsAfterGrace(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=1s")
	s, up, dir, key, chat := f.started, f.up, f.dir, f.key, f.chat

	sse, err := client.NewSSEMCPClient(s.url+"/sse", client.WithHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	c := mcpClient(t, sse)
	before := up.Count()
	callEndedByShutdown(t, s, up, c, chat)
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
	}
	if !up.WaitCanceledN(before, time.Second) {
		t.Error("the upstream call of the SSE tool call was not cancelled")
	}
	if outcomes := chatOutcomes(t, sqliteIn(dir), chat); len(outcomes) != 1 || outcomes[0] != "interrupted" {
		t.Errorf("usage of the SSE call ended by the shutdown: %v, want [interrupted]", outcomes)
	}
	endedByShutdownLogged(t, s.stderr.String())
}

// TestShutdownDoesNotWaitForIdleSSESessions: an open HTTP+SSE session with
// no call running is an HTTP request that never ends by itself; it must
// not hold the shutdown for the whole grace period.
func TestShutdownDoesNotWaitForIdleSSESessions(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=60s")
	s, key := f.started, f.key

	sse, err := client.NewSSEMCPClient(s.url+"/sse", client.WithHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	c := mcpClient(t, sse)
	if _, err := c.ListTools(context.Background(), mcpgo.ListToolsRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, s, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM with an idle SSE session open (60s grace): %v\n%s", err, s.stderr.String())
	}
}

// TestStdioEndsCallsWhenTheAgentLeaves: an agent that closes stdin while
// tool calls run, or dies (closing its end of stdout too, so that a write
// to it is a broken pipe, which must not kill `parley mcp`), ends the
// calls: the upstream requests are cancelled and recorded as
// client_disconnect, and the exit is 0. mcp-go runs mcp.StdioWorkers
// stdio calls at a time and queues the rest, which it then runs with their context
// cancelled: those never go upstream and record no usage. With stdin
// left open, the first write to a closed stdout ends the session too.
func TestStdioEndsCallsWhenTheAgentLeaves(t *testing.T) {
	f := serveWithChat(t)
	up, dir, chat := f.up, f.dir, f.chat
	f.stop(t)
	up.Script(func(int, llmtest.Request) llmtest.Behavior { return llmtest.Behavior{Fault: llmtest.FaultHang} })

	for _, dies := range []bool{false, true} {
		t.Run(map[bool]string{false: "stdin closed", true: "stdin and stdout closed"}[dies], func(t *testing.T) {
			cmd, stdin, stdout := startStdio(t, dir)
			if !dies {
				go func() { _, _ = io.Copy(io.Discard, stdout) }()
			}
			before, recorded := up.Count(), len(chatOutcomes(t, sqliteIn(dir), chat))
			var calls []string
			const running, queued = mcp.StdioWorkers, 3
			for id := 2; id < 2+running+queued; id++ {
				calls = append(calls, stdioChatCall(id, chat, "hang"))
			}
			sendStdio(t, stdin, calls...)
			for deadline := time.Now().Add(10 * time.Second); up.Count() < before+running; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the upstream got %d of the %d calls that run at once", up.Count()-before, running)
				}
			}
			if dies {
				stdout.(io.Closer).Close()
			}
			stdin.Close()
			waitStdioExit(t, cmd, "the agent leaving")
			for i := range running {
				if !up.WaitCanceledN(before+i, time.Second) {
					t.Errorf("upstream request %d was not cancelled", before+i)
				}
			}
			if got := up.Count() - before; got != running {
				t.Errorf("the upstream got %d calls, want the %d running when the agent left", got, running)
			}
			// Every call so far was one the agent left.
			outcomes := chatOutcomes(t, sqliteIn(dir), chat)
			if len(outcomes) != recorded+running || slices.ContainsFunc(outcomes, func(o string) bool { return o != "client_disconnect" }) {
				t.Errorf("usage after the agent left with %d calls running and %d queued: %v, want %d client_disconnect", running, queued, outcomes, recorded+running)
			}
		})
	}
	t.Run("stdout closed", func(t *testing.T) {
		cmd, stdin, stdout := startStdio(t, dir)
		defer stdin.Close()
		stdout.(io.Closer).Close()
		sendStdio(t, stdin, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
		waitStdioExit(t, cmd, "a write to a closed stdout")
		if logs := cmd.Stderr.(*logtest.Buffer).String(); !strings.Contains(logs, "its output cannot be written") {
			t.Errorf("the session's end was not logged:\n%s", logs)
		}
	})
}

// TestStdioShutdownGivesCallsTheGrace: SIGTERM to `parley mcp` (a
// supervisor or container stopping it) treats its calls as `parley
// serve` does: a call that finishes within PARLEY_SHUTDOWN_GRACE gets its
// result; one still running after it gets "unavailable: ... shutting
// down" and is recorded as interrupted, not as the client leaving; then
// the process exits 0.
func TestStdioShutdownGivesCallsTheGrace(t *testing.T) {
	f := serveWithChat(t)
	up, dir, chat := f.up, f.dir, f.chat
	f.stop(t)

	cmd, stdin, stdout := startStdio(t, dir, "PARLEY_SHUTDOWN_GRACE=3s")
	defer stdin.Close()
	results := make(chan map[string]any, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["id"] != nil {
				results <- m
			}
		}
		close(results)
	}()

	// The two calls run at once and may reach the upstream in either
	// order: each gets its behavior by its prompt, not by its place.
	up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if strings.Contains(string(r.RawBody), "hang") {
			return llmtest.Behavior{Fault: llmtest.FaultHang}
		}
		return llmtest.Behavior{Delay: time.Second, Reply: "in time"}
	})
	before := up.Count()
	sendStdio(t, stdin, stdioChatCall(2, chat, "quick"), stdioChatCall(3, chat, "hang"))
	for deadline := time.Now().Add(10 * time.Second); up.Count() < before+2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the calls never reached the upstream")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := map[float64]string{}
	deadline := time.After(15 * time.Second)
	for len(got) < 3 {
		select {
		case m, ok := <-results:
			if !ok {
				t.Fatalf("stdout closed with results %v", got)
			}
			b, _ := json.Marshal(m)
			got[m["id"].(float64)] = string(b)
		case <-deadline:
			t.Fatalf("results within 15s of SIGTERM (3s grace): %v", got)
		}
	}
	if !strings.Contains(got[2], "in time") || strings.Contains(got[2], `"isError":true`) {
		t.Errorf("the call that finished within the grace period got %s", got[2])
	}
	if !strings.Contains(got[3], "unavailable:") || !strings.Contains(got[3], "shutting down") {
		t.Errorf("the call still running after the grace period got %s; want unavailable, shutting down", got[3])
	}
	waitStdioExit(t, cmd, "SIGTERM")
	outcomes := chatOutcomes(t, sqliteIn(dir), chat)
	slices.Sort(outcomes)
	if !slices.Equal(outcomes, []string{"interrupted", "ok"}) {
		t.Errorf("usage of the calls SIGTERM found running: %v, want [interrupted ok]", outcomes)
	}
	endedByShutdownLogged(t, cmd.Stderr.(*logtest.Buffer).String())
}

// TestStdioSecondSignalEndsTheGrace: `parley mcp` takes a second signal
// as `parley serve` does: the call still running gets "unavailable: ...
// shutting down" at once, not after the 60s grace, its usage is recorded
// as interrupted, and the exit is 0.
func TestStdioSecondSignalEndsTheGrace(t *testing.T) {
	f := serveWithChat(t)
	up, dir, chat := f.up, f.dir, f.chat
	f.stop(t)

	cmd, stdin, stdout := startStdio(t, dir, "PARLEY_SHUTDOWN_GRACE=60s")
	defer stdin.Close()
	results := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			results <- sc.Text()
		}
		close(results)
	}()
	up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	before := up.Count()
	sendStdio(t, stdin, stdioChatCall(2, chat, "hang"))
	select {
	case got := <-results:
		if !strings.Contains(got, `"id":1`) {
			t.Fatalf("initialize answered %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("initialize got no answer within 10s")
	}
	waitRequest(t, up, before)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logs := cmd.Stderr.(*logtest.Buffer)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "shutting down"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown logged within 10s of SIGTERM:\n%s", logs.String())
		}
	}
	select {
	case got := <-results:
		t.Fatalf("the call was answered within the grace period: %s", got)
	case <-time.After(500 * time.Millisecond):
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-results:
		if !strings.Contains(got, `"id":2`) || !strings.Contains(got, "unavailable:") || !strings.Contains(got, "shutting down") {
			t.Errorf("the call ended by the second signal got %s; want unavailable, shutting down", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call got no result within 5s of the second signal (60s grace)")
	}
	waitStdioExit(t, cmd, "the second signal")
	if outcomes := chatOutcomes(t, sqliteIn(dir), chat); len(outcomes) != 1 || outcomes[0] != "interrupted" {
		t.Errorf("usage of the call the second signal ended: %v, want [interrupted]", outcomes)
	}
}

// startStdio starts `parley mcp` in dir, as the local admin, with the
// environment the tests' upstream needs and env on top.
func startStdio(t *testing.T, dir string, env ...string) (*exec.Cmd, io.WriteCloser, io.Reader) {
	t.Helper()
	cmd := exec.Command(bin, "mcp")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY=", "PARLEY_API_KEY=", "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true"), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &logtest.Buffer{} // its logs, for a test to read
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, stdin, stdout
}

// waitStdioExit waits up to 15s for `parley mcp` to exit 0 after what
// ended it.
func waitStdioExit(t *testing.T, cmd *exec.Cmd, after string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("parley mcp exited with %v after %s", err, after)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("parley mcp did not exit within 15s of %s", after)
	}
}

// TestStdioKeyRevokedOverREST: `parley mcp` started with a key that is
// then revoked over `parley serve`'s REST API (another process on the same
// database) refuses the next call once its cache of keys expires (2s), as
// the README promises of any instance, rather than acting as the key's
// user until the agent restarts it.
func TestStdioKeyRevokedOverREST(t *testing.T) {
	f := serveWithChat(t)
	user := api(t, f.started, f.key, "POST", "/api/v1/users", 201, map[string]any{"name": "agent"})["id"].(string)
	k := api(t, f.started, f.key, "POST", "/api/v1/users/"+user+"/api-keys", 201, map[string]any{"name": "stdio"})

	cmd, stdin, stdout := startStdio(t, f.dir, "PARLEY_API_KEY="+k["key"].(string))
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	send := func(msg string) string {
		t.Helper()
		if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(msg, `"id"`) && !lines.Scan() {
			t.Fatalf("parley mcp answered nothing to %s: %v", msg, lines.Err())
		}
		return lines.Text()
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"stdio-test","version":"1"}}}`)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list-projects","arguments":{}}}`
	if got := send(list); strings.Contains(got, `"isError":true`) {
		t.Fatalf("list-projects with a valid key: %s", got)
	}
	api(t, f.started, k["key"].(string), "DELETE", "/api/v1/users/"+user+"/api-keys/"+k["id"].(string), 200, nil)
	time.Sleep(2100 * time.Millisecond) // parley mcp's cache of keys (app.Config.CacheTTL's default)
	if got := send(list); !strings.Contains(got, `"isError":true`) || !strings.Contains(got, "unauthenticated: PARLEY_API_KEY is not valid, has expired or has been revoked") {
		t.Errorf("list-projects after the key was revoked: %s, want an unauthenticated error result naming PARLEY_API_KEY", got)
	}
	stdin.Close()
	waitStdioExit(t, cmd, "stdin closing")
}

// sendStdio writes the MCP handshake (initialize as id 1, then
// notifications/initialized) to a stdio session, then msgs, one per line.
func sendStdio(t *testing.T, stdin io.Writer, msgs ...string) {
	t.Helper()
	msgs = append([]string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"stdio-test","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	}, msgs...)
	for _, msg := range msgs {
		if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// stdioChatCall is a tools/call of create-chat-completion-for-chat in chat
// with one user message, as request id.
func stdioChatCall(id int, chat, content string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create-chat-completion-for-chat","arguments":{"chatId":"%s","messages":[{"role":"user","content":"%s"}]}}}`, id, chat, content)
}

// TestStdioShutdownRefusesNewCalls: once SIGTERM began the shutdown of
// `parley mcp`, a call the agent sends is refused at once, with an error
// result saying the server is shutting down, and never reaches the
// upstream, while the call already running finishes within the grace
// period and gets its result; then the process exits 0. The agent is the
// mcp-go client, which starts `parley mcp` itself.
func TestStdioShutdownRefusesNewCalls(t *testing.T) {
	f := serveWithChat(t)
	up, dir, chat := f.up, f.dir, f.chat
	f.stop(t)

	up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if strings.Contains(string(r.RawBody), "slow") {
			return llmtest.Behavior{Delay: 3 * time.Second, Reply: "in time"}
		}
		return llmtest.Behavior{}
	})
	logs := &logtest.Buffer{}
	var proc *exec.Cmd
	tr := transport.NewStdioWithOptions(bin, nil, []string{"mcp"}, transport.WithCommandFunc(
		func(_ context.Context, command string, _, args []string) (*exec.Cmd, error) {
			proc = exec.Command(command, args...)
			proc.Dir = dir
			proc.Env = append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY=", "PARLEY_API_KEY=",
				"PARLEY_ALLOW_PRIVATE_UPSTREAMS=true", "PARLEY_SHUTDOWN_GRACE=30s")
			proc.Stderr = logs
			return proc, nil
		}))
	c := mcpClient(t, client.NewClient(tr))

	type result struct {
		res *mcpgo.CallToolResult
		err error
	}
	running := make(chan result, 1)
	before := up.Count()
	go func() {
		res, err := c.CallTool(context.Background(), chatCall(chat, "slow"))
		running <- result{res, err}
	}()
	waitRequest(t, up, before)
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "shutting down"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown logged within 10s of SIGTERM:\n%s", logs.String())
		}
	}

	res, err := c.CallTool(context.Background(), chatCall(chat, "new"))
	if err != nil || res == nil || !res.IsError {
		t.Fatalf("a call sent during the grace period = %+v, %v; want an error result", res, err)
	}
	if text := fmt.Sprint(res.Content); !strings.Contains(text, "unavailable: the server is shutting down and starts no more calls") {
		t.Errorf("a call sent during the grace period says %s; want unavailable, no new calls", text)
	}
	if got := up.Count(); got != before+1 {
		t.Errorf("the upstream got %d requests, want only the running call's", got-before)
	}

	select {
	case r := <-running:
		if r.err != nil || r.res == nil || r.res.IsError || !strings.Contains(fmt.Sprint(r.res.Content), "in time") {
			t.Errorf("the call running at SIGTERM = %+v, %v; want its reply", r.res, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the call running at SIGTERM got no result within 15s (30s grace, 3s reply)")
	}
	if err := c.Close(); err != nil {
		t.Errorf("parley mcp exited with %v after SIGTERM:\n%s", err, logs.String())
	}
	if outcomes := chatOutcomes(t, sqliteIn(dir), chat); len(outcomes) != 1 || outcomes[0] != "ok" {
		t.Errorf("usage after SIGTERM: %v, want [ok] (the running call only)", outcomes)
	}
}

// chatCall is a create-chat-completion-for-chat call in chat with one
// user message.
func chatCall(chat, content string) mcpgo.CallToolRequest {
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "create-chat-completion-for-chat"
	req.Params.Arguments = map[string]any{"chatId": chat, "messages": []any{map[string]any{"role": "user", "content": content}}}
	return req
}

// TestShutdownEndsAStalledRequestWith503: a request other than a
// completion that is still running when the grace period ends (here a
// project's create, waiting on SQLite's write lock, which another
// connection holds) is ended by the server: a 503 saying to send it
// again, not the 499 of a client that cancelled, which tells clients and
// load balancers not to.
func TestShutdownEndsAStalledRequestWith503(t *testing.T) {
	f := serveWithChat(t, "PARLEY_SHUTDOWN_GRACE=1s")
	st := openStopped(t, sqliteIn(f.dir))
	tx := st.DB().Begin()
	if err := tx.Exec("UPDATE users SET name = name").Error; err != nil { // takes the write lock
		t.Fatal(err)
	}
	defer tx.Rollback()
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", f.url+"/api/v1/projects", strings.NewReader(`{"name": "stalled"}`))
		req.Header.Set("Authorization", "Bearer "+f.key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- answer{status: res.StatusCode, body: string(b)}
	}()
	time.Sleep(300 * time.Millisecond) // the create waits on the lock
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.err != nil || a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "shutting down") {
			t.Errorf("the stalled request = %d %s (%v), want a 503 saying the server is shutting down", a.status, a.body, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled request got no answer within 10s of SIGTERM")
	}
	tx.Rollback()
	if err := waitExit(t, f.started, 15*time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	if !strings.Contains(f.stderr.String(), "request ended by shutdown") {
		t.Errorf("no warning of the request the shutdown ended:\n%s", f.stderr.String())
	}
}

// TestStdioShutdownWhileTheAgentReadsNothing: an agent that stopped
// reading `parley mcp`'s output (a response larger than the pipe holds
// blocks its write) held the exit after SIGTERM for ever, and with it the
// last usage records. The exit waits a few seconds past the grace, then
// leaves the unread responses, says so, and flushes usage.
func TestStdioShutdownWhileTheAgentReadsNothing(t *testing.T) {
	f := serveWithChat(t)
	dir, chat := f.dir, f.chat
	f.stop(t)

	cmd, stdin, _ := startStdio(t, dir, "PARLEY_SHUTDOWN_GRACE=1s")
	defer stdin.Close()
	before := f.up.Count()
	// tools/list answers about 80 KB, past a pipe's 64 KiB: nothing reads it.
	sendStdio(t, stdin, stdioChatCall(2, chat, "quick"), `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	for deadline := time.Now().Add(10 * time.Second); f.up.Count() < before+1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the upstream")
		}
	}
	time.Sleep(500 * time.Millisecond) // its result written, or blocked behind the lists
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStdioExit(t, cmd, "SIGTERM with the output unread")
	if logs := cmd.Stderr.(*logtest.Buffer).String(); !strings.Contains(logs, "responses unsent") {
		t.Errorf("no warning of the unsent responses in the log:\n%s", logs)
	}
	if outcomes := chatOutcomes(t, sqliteIn(dir), chat); !slices.Equal(outcomes, []string{"ok"}) {
		t.Errorf("usage of the call: %v, want [ok] (flushed at exit)", outcomes)
	}
}
