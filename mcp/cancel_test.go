package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestCancelledCallGetsNoResponse: a call the client cancels with
// notifications/cancelled, keeping its request open (as the TypeScript
// SDK's client does over every transport, and mcp-go's over stdio), gets no
// response, as the protocol asks of the receiver: the upstream call is
// cancelled and its usage recorded as client_disconnect, the client reads
// no response for that id, and the session's next call works. Over
// streamable HTTP the call's request ends, without a response.
func TestCancelledCallGetsNoResponse(t *testing.T) {
	for _, over := range []string{overHTTPLegacy, overSSE, overStdio} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			s := e.connect(over, "editor", Options{})
			tr := s.GetTransport()
			before := e.disconnects()
			started, canceled := e.upstream.hang()

			ended := callUntilUpstream(t, tr, e, "cancel-me", started)
			cancel := mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION, Notification: mcpgo.Notification{
				Method: string(mcpgo.MethodNotificationCancelled),
				Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": "cancel-me", "reason": "the user stopped it"}},
			}}
			must(t, tr.SendNotification(context.Background(), cancel))
			expectCanceled(t, e, canceled, before)
			if over == overHTTPLegacy {
				select {
				case <-ended:
				case <-time.After(5 * time.Second):
					t.Fatal("the cancelled call's HTTP request did not end")
				}
			}

			// The usage was recorded as the cancelled call ended, just
			// before mcp-go answers it: an answer would reach the client
			// before the next call's.
			e.upstream.reply("still ", "here")
			var out completionOut
			s.ok(t, "create-chat-completion", cancelArgs(e), &out)
			if out.Content != "still here" {
				t.Errorf("the next call's reply = %q, want %q", out.Content, "still here")
			}
			if r, ok := s.wire.response("cancel-me"); ok {
				t.Errorf("the client received a response to the call it cancelled: %s", r)
			}
		})
	}
}

// TestCancelNamesTheIDExactly: notifications/cancelled cancels the request
// whose id it names, of the same JSON type: the number 7 is not the string
// "7" (JSON-RPC ids are strings or numbers, and a client may use both).
// mcp-go keys its calls by fmt.Sprint of the id, which makes the two one;
// a cancellation naming 7 must leave the call "7" running.
func TestCancelNamesTheIDExactly(t *testing.T) {
	for _, over := range []string{overHTTPLegacy, overSSE, overStdio} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			s := e.connect(over, "editor", Options{})
			tr := s.GetTransport()
			started, canceled := e.upstream.hang()

			callUntilUpstream(t, tr, e, "7", started)
			cancel := func(id any) {
				must(t, tr.SendNotification(context.Background(), mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION,
					Notification: mcpgo.Notification{Method: string(mcpgo.MethodNotificationCancelled),
						Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": id}}}}))
			}
			cancel(7)
			select {
			case <-canceled:
				t.Fatal(`cancelling the request 7 cancelled the request "7"`)
			case <-time.After(time.Second):
			}
			if r, ok := s.wire.response("7"); ok {
				t.Errorf(`the call "7" got a response after the client cancelled 7: %s`, r)
			}
			cancel("7")
			select {
			case <-canceled:
			case <-time.After(5 * time.Second):
				t.Fatal(`cancelling "7" did not cancel it`)
			}
		})
	}
}

// TestCancelledCallOfAJSONOnlyClient: over streamable HTTP, a call whose
// client takes only JSON (Accept: application/json), cancelled, ends with
// 204 and no body, not with an empty event stream it said it does not take.
func TestCancelledCallOfAJSONOnlyClient(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	r := newRawSession(t, e)
	started, _ := e.upstream.hang()
	args, _ := json.Marshal(cancelArgs(e))
	type answer struct {
		res  *http.Response
		body string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		res, body, err := r.send(context.Background(), "/mcp",
			`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create-chat-completion","arguments":`+string(args)+`}}`,
			"Accept", "application/json")
		answered <- answer{res, body, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the request")
	}
	r.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`)
	select {
	case a := <-answered:
		must(t, a.err)
		if a.res.StatusCode != http.StatusNoContent || a.body != "" || a.res.Header.Get("Content-Type") != "" {
			t.Errorf("the cancelled call ended %d %q %q, want 204 without a body", a.res.StatusCode, a.res.Header.Get("Content-Type"), a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled call's request did not end")
	}
}

// TestCancelNamesTheIDExactlyAmongCalls: with the calls 7 and "7" running
// at once on one session, in either order, notifications/cancelled naming
// 7 cancels the call 7 and leaves "7" running, unanswered, and the other
// way round. mcp-go keeps one cancel function for both ids (fmt.Sprint)
// and would end whichever call it registered last.
func TestCancelNamesTheIDExactlyAmongCalls(t *testing.T) {
	for _, over := range []string{overHTTPLegacy, overSSE, overStdio} {
		for _, order := range [][2]any{{7, "7"}, {"7", 7}} {
			t.Run(fmt.Sprintf("%s/%T first", over, order[0]), func(t *testing.T) {
				e := newEnv(t, dbtest.SQLite(t))
				s := e.connect(over, "editor", Options{})
				tr := s.GetTransport()
				first := e.upstream.Count()
				upstream := map[any]int{} // the call's upstream request, by id
				canceled := map[any]<-chan struct{}{}
				for i, id := range order {
					started, c := e.upstream.hang()
					callUntilUpstream(t, tr, e, id, started)
					upstream[id], canceled[id] = first+i, c
				}
				cancel := func(id any) {
					must(t, tr.SendNotification(context.Background(), mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION,
						Notification: mcpgo.Notification{Method: string(mcpgo.MethodNotificationCancelled),
							Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": id}}}}))
				}
				for i, id := range order {
					cancel(id)
					select {
					case <-canceled[id]:
					case <-time.After(5 * time.Second):
						t.Fatalf("cancelling %#v did not cancel the call %#v", id, id)
					}
					for _, other := range order[i+1:] {
						if e.upstream.WaitCanceledN(upstream[other], 300*time.Millisecond) {
							t.Fatalf("cancelling %#v cancelled the call %#v", id, other)
						}
					}
					if r, ok := s.wire.response(order[1]); ok && i == 0 {
						t.Fatalf("the call %#v got a response after the client cancelled %#v: %s", order[1], id, r)
					}
				}
			})
		}
	}
}

// TestCallCancelledBeforeItStartsDoesNotRun: a call the client cancels
// before mcp-go starts it does not run when its turn comes: nothing goes
// upstream, no usage is recorded, and no response is sent; the session's
// next call works. Over stdio mcp-go runs StdioWorkers tool calls at a
// time and queues the rest: the call waits in that queue. Over HTTP+SSE the
// cancellation lands before the goroutine serving the call has started:
// a request hook of the test's holds it there.
func TestCallCancelledBeforeItStartsDoesNotRun(t *testing.T) {
	for _, over := range []string{overStdio, overSSE} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			// Calls 1 to StdioWorkers hold the workers; call queued waits.
			queued, next := StdioWorkers+1, StdioWorkers+2
			reached, released := make(chan struct{}), make(chan struct{})
			var w *rawWire
			if over == overStdio {
				w = e.rawStdio()
			} else {
				e.onRequest = func(_ context.Context, id any, _ any) error {
					if id == float64(queued) {
						close(reached)
						<-released
					}
					return nil
				}
				w = e.rawSSE()
			}
			w.initialize(t)
			responses := w.responses()
			call := func(id int, content string) {
				w.send(t, obj{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": obj{"name": "create-chat-completion",
					"arguments": obj{"aiProviderId": e.provider.ID, "messages": userMsg(content)}}})
			}
			cancel := func(id int) {
				w.send(t, obj{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": obj{"requestId": id}})
			}

			if over == overStdio {
				// Calls 1 to StdioWorkers hold mcp-go's workers; call
				// queued waits in its queue until they are cancelled.
				for id := 1; id <= StdioWorkers; id++ {
					e.upstream.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
					call(id, "hold")
				}
				for deadline := time.Now().Add(10 * time.Second); e.upstream.Count() < StdioWorkers; {
					if time.Now().After(deadline) {
						t.Fatalf("the upstream got %d of the %d calls that hold the workers", e.upstream.Count(), StdioWorkers)
					}
					time.Sleep(5 * time.Millisecond)
				}
				call(queued, "queued")
				cancel(queued)
				for id := 1; id <= StdioWorkers; id++ {
					cancel(id)
				}
				for deadline := time.Now().Add(5 * time.Second); e.disconnects() < StdioWorkers && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				if got := e.disconnects(); got != StdioWorkers {
					t.Fatalf("usage records with the outcome client_disconnect: %d, want %d", got, StdioWorkers)
				}
			} else {
				call(queued, "queued")
				select {
				case <-reached:
				case <-time.After(10 * time.Second):
					t.Fatal("mcp-go never began serving the queued call")
				}
				cancel(queued)
				close(released)
			}

			// Call next comes after call queued, so call queued has begun
			// by the time call next is answered.
			e.upstream.reply("after")
			call(next, "next")
			select {
			case m, ok := <-responses:
				if !ok || *m.ID != next || m.Result == nil || m.Result.StructuredContent.Content != "after" {
					t.Fatalf("the first response after the cancellations: %s, want call %d's reply", m.Raw, next)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("call %d got no response", next)
			}
			// Were call queued running, its upstream request would come now.
			time.Sleep(time.Second)
			for _, r := range e.upstream.Requests() {
				if r.Messages[len(r.Messages)-1].Content == "queued" {
					t.Error("the upstream got the request of the call cancelled before it started")
				}
			}
			if got := e.records("ok"); got != 1 {
				t.Errorf("usage records with the outcome ok: %d, want 1 (call next's)", got)
			}
			select {
			case m := <-responses:
				t.Errorf("a response after call %d's: %s", next, m.Raw)
			default:
			}
		})
	}
}

// TestLineFilter: lines come out whole and in order, however the input is
// cut, without those keep refuses; an unended last line is seen too.
func TestLineFilter(t *testing.T) {
	in := "keep 1\ndrop\nkeep 2\r\n\nkeep 3"
	for name, r := range map[string]func() io.Reader{
		"whole":       func() io.Reader { return strings.NewReader(in) },
		"byte a read": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
	} {
		t.Run(name, func(t *testing.T) {
			var seen []string
			f := &lineFilter{r: r(), keep: func(line []byte) bool {
				seen = append(seen, string(line))
				return !bytes.Equal(line, []byte("drop"))
			}}
			out, err := io.ReadAll(iotest.HalfReader(f))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(out), "keep 1\nkeep 2\r\n\nkeep 3"; got != want {
				t.Errorf("out = %q, want %q", got, want)
			}
			if got, want := strings.Join(seen, "|"), "keep 1|drop|keep 2\r||keep 3"; got != want {
				t.Errorf("seen = %q, want %q", got, want)
			}
		})
	}
}

// TestLineFilterLetsALargeLineGo: the buffer a line of megabytes took is
// not kept for the lines after it (a stdio session lives as long as its
// agent, and one large message would hold its size for good).
func TestLineFilterLetsALargeLineGo(t *testing.T) {
	big := `{"x":"` + strings.Repeat("a", 4<<20) + `"}`
	f := &lineFilter{r: strings.NewReader(big + "\nsmall\n"), keep: func([]byte) bool { return true }}
	out, err := io.ReadAll(f)
	if err != nil || len(out) != len(big)+len("\nsmall\n") {
		t.Fatalf("read %d bytes, %v", len(out), err)
	}
	if c := cap(f.part); c > keptLineBytes {
		t.Errorf("the filter keeps a %d-byte buffer after the large line", c)
	}
}

// callUntilUpstream sends a completion call with id over tr in the
// background and waits until the upstream has it (started). The returned
// channel closes once SendRequest returns; the test's end stops it.
func callUntilUpstream(t *testing.T, tr transport.Interface, e *env, id any, started <-chan struct{}) <-chan struct{} {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		params := obj{"name": "create-chat-completion", "arguments": cancelArgs(e)}
		_, _ = tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcpgo.JSONRPC_VERSION,
			ID: mcpgo.NewRequestId(id), Method: string(mcpgo.MethodToolsCall), Params: params})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the request")
	}
	return ended
}

// TestStoppedStreamKeepsItsTurn: an agent that cancels a streamed call of
// create-chat-completion-for-chat once progress brought part of the reply
// keeps the turn as far as it went, as a REST client that stops a stream
// does: the chat's conversation holds the request's message and the text
// that had arrived, with the finish reason client_disconnect. Called again
// with its idempotencyKey (how an agent recovers a call that timed out),
// it returns that turn, and its text says the reply is partial and how to
// get the rest: it read as a whole reply.
func TestStoppedStreamKeepsItsTurn(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{})
	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "stories"}, &chat)
	before := e.upstream.Count()
	e.upstream.Enqueue(llmtest.Behavior{Deltas: []string{"Once ", "upon ", "a time"}, Fault: llmtest.FaultHang, AfterDeltas: 2})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	args := obj{"chatId": chat.ID, "messages": userMsg("Tell me a story"), "idempotencyKey": "story-1"}
	go func() {
		_, err := s.callCtx(ctx, "create-chat-completion-for-chat", args, "story")
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); len(s.notes("story")) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("progress before the stop: %+v", s.notes("story"))
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled call returned no error")
	}
	if !e.upstream.WaitCanceledN(before, time.Second) {
		t.Fatal("the upstream request was not cancelled within a second")
	}

	var convs listOut[conversationOut]
	for deadline := time.Now().Add(5 * time.Second); len(convs.Data) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.ok(t, "list-conversations", obj{"chatId": chat.ID}, &convs)
	}
	if len(convs.Data) != 1 {
		t.Fatalf("conversations of the chat after the stop: %+v", convs.Data)
	}
	var conv conversationOut
	s.ok(t, "get-conversation", obj{"conversationId": convs.Data[0].ID}, &conv)
	if m := conv.Messages; len(m) != 2 || m[0].Content != "Tell me a story" || m[1].Content != "Once upon " || m[1].FinishReason != "client_disconnect" {
		t.Fatalf("stored turn: %+v", conv.Messages)
	}
	var again completionOut
	res := s.ok(t, "create-chat-completion-for-chat", args, &again)
	if !again.Replayed || again.Content != "Once upon " || !strings.Contains(text(res), "the reply is partial: continue the conversation with a new idempotencyKey") {
		t.Errorf("the call again: %+v, text %q; want the stopped turn, saying it is partial", again, text(res))
	}
}

// TestCancelReachesAnthropic: notifications/cancelled cancels the upstream
// request within a second on the Anthropic wire too (its SDK, not
// go-openai's, makes the call), and the usage is recorded with the outcome
// client_disconnect.
func TestCancelReachesAnthropic(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	p, err := e.svcs.Providers.Create(e.ctx("admin"), domain.ProviderCreate{ProjectID: e.project.ID, Name: "claude",
		Type: domain.ProviderAnthropic, BaseURL: e.upstream.URL(), DefaultModel: "claude-fake", APIKey: "sk-ant-test-0123456789abcdef"})
	must(t, err)
	e.provider = p // cancelArgs calls it
	s := e.connect(overStdio, "editor", Options{})
	tr := s.GetTransport()
	before := e.disconnects()
	started, canceled := e.upstream.hang()

	callUntilUpstream(t, tr, e, "cancel-claude", started)
	if got := e.upstream.Last().Protocol; got != llmtest.Anthropic {
		t.Fatalf("the upstream got a %s request, want anthropic", got)
	}
	must(t, tr.SendNotification(context.Background(), mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION, Notification: mcpgo.Notification{
		Method: string(mcpgo.MethodNotificationCancelled),
		Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": "cancel-claude"}},
	}}))
	expectCanceled(t, e, canceled, before)
}

// expectCanceled checks that a cancelled call's upstream request ended
// within a second, and that its usage was recorded as client_disconnect
// (the env held before such records when the call started).
func expectCanceled(t *testing.T, e *env, canceled <-chan struct{}, before int64) {
	t.Helper()
	select {
	case <-canceled:
	case <-time.After(time.Second):
		t.Fatal("the upstream request was not cancelled within a second")
	}
	for deadline := time.Now().Add(5 * time.Second); e.disconnects() == before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.disconnects(); got != before+1 {
		t.Errorf("usage records with the outcome client_disconnect: %d, want %d", got, before+1)
	}
}

// TestStdioReadsDoNotWaitBehindCompletions: over stdio, a read an agent
// makes while five completions run is answered while they run; mcp-go's
// default of five workers made it wait for one of them to end.
func TestStdioReadsDoNotWaitBehindCompletions(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	w := e.rawStdio()
	w.initialize(t)
	responses := w.responses()
	for id := 1; id <= 5; id++ {
		e.upstream.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
		w.send(t, obj{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": obj{"name": "create-chat-completion",
			"arguments": obj{"aiProviderId": e.provider.ID, "messages": userMsg("hold")}}})
	}
	for deadline := time.Now().Add(10 * time.Second); e.upstream.Count() < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream got %d of the 5 completions", e.upstream.Count())
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.send(t, obj{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": obj{"name": "list-projects", "arguments": obj{}}})
	select {
	case m := <-responses:
		if *m.ID != 6 {
			t.Errorf("call %d answered first, want the read (6)", *m.ID)
		}
	case <-time.After(10 * time.Second):
		t.Error("the read was not answered while five completions ran")
	}
	for id := 1; id <= 5; id++ {
		w.send(t, obj{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": obj{"requestId": id}})
	}
}

// TestSSESessionCallsAreBounded: an HTTP+SSE session may have
// sseCallsPerSession requests awaiting their responses, and the next is refused, 429, until
// one is answered: each POST is answered 202 at once, and one session held
// thousands of upstream calls, and as many file descriptors.
func TestSSESessionCallsAreBounded(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	w := e.rawSSE()
	w.initialize(t)
	responses := w.responses()
	call := func(id int) error {
		b, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": obj{"name": "create-chat-completion",
			"arguments": obj{"aiProviderId": e.provider.ID, "messages": userMsg("hold")}}})
		return w.write(b)
	}
	base := e.upstream.Count()
	for id := 1; id <= sseCallsPerSession; id++ {
		e.upstream.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
		must(t, call(id))
	}
	err := call(sseCallsPerSession + 1)
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("a request past the session's %d awaiting responses: %v; want 429", sseCallsPerSession, err)
	}
	// Every call holds its hang upstream before the one reply is queued,
	// so that no call still on its way takes it.
	for deadline := time.Now().Add(10 * time.Second); e.upstream.Count()-base < sseCallsPerSession; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls reached the upstream within 10s", e.upstream.Count()-base, sseCallsPerSession)
		}
	}
	w.send(t, obj{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": obj{"requestId": 1}})
	e.upstream.reply("after")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := call(sseCallsPerSession + 2); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("once one was cancelled, another request: %v; want it taken", err)
		}
	}
	select {
	case m := <-responses:
		if *m.ID != sseCallsPerSession+2 {
			t.Errorf("the response of call %d came first; want the one taken after the cancellation", *m.ID)
		}
	case <-time.After(10 * time.Second):
		t.Error("the request taken after the cancellation got no response")
	}
	for id := 2; id <= sseCallsPerSession; id++ {
		w.send(t, obj{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": obj{"requestId": id}})
	}
}

// TestStdioCountsOnlyRequestsMcpGoAnswers: over stdio a request whose
// jsonrpc is no string is answered by mcp-go with id null, which settles
// nothing, so it is not counted as awaiting a response (the shutdown waits
// for those); a request of a string version is.
func TestStdioCountsOnlyRequestsMcpGoAnswers(t *testing.T) {
	pending := &pendingResponses{}
	for _, msg := range []string{`{"jsonrpc":2,"id":1,"method":"ping"}`, `{"jsonrpc":{},"id":2,"method":"tools/list"}`} {
		if !watchRequests(pending, []byte(msg)) {
			t.Errorf("%s kept from mcp-go, want it passed on (mcp-go answers it)", msg)
		}
	}
	if n := len(pending.sessions[stdioSession]); n != 0 {
		t.Errorf("%d requests awaiting a response, want none", n)
	}
	watchRequests(pending, []byte(`{"jsonrpc":"2.0","id":3,"method":"ping"}`))
	if n := len(pending.sessions[stdioSession]); n != 1 {
		t.Errorf("%d requests awaiting a response after a valid one, want 1", n)
	}
}
