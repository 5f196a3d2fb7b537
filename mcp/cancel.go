package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// A request the client cancels with notifications/cancelled gets no
// response: the protocol says the receiver SHOULD NOT send one (and the
// sender ignores one that comes anyway, though some clients log it as a
// response to an unknown id, or reconnect). mcp-go (v1.6.0) answers a
// cancelled call all the same, with the error its handler returned
// (errCanceled, JSON-RPC -32603): HandleMessage returns a
// response for every request and each transport writes it, with no hook
// between the two. So Parley's transports leave it out:
//   - over stdio and HTTP+SSE, where a session's responses share one
//     stream, the stream drops the response to a request the client
//     cancelled (pendingResponses);
//   - over streamable HTTP, where each request has a response of its own,
//     the request's context is ended, on which mcp-go writes nothing, and
//     its response is an event stream that ends empty (liveRequests).
//
// A cancellation never reaches mcp-go: Parley ends the call itself, over
// stdio and HTTP+SSE through pendingResponses, which the tool call's
// handler tells of itself by its request id (watch, tagRequest): the
// transport that drops the call's response is the one that must know it
// was cancelled. (mcp-go v1.2.1 also took the number 7 and the string "7"
// for one id, and cancelled the wrong call.)

// A request the client cancelled before mcp-go started it does not run at
// all: over stdio mcp-go runs StdioWorkers tool calls at a time and queues the
// rest, and over HTTP+SSE a cancellation can land before the goroutine
// that serves the call has started. Such a call would run in full,
// upstream call and usage record included, for a response that is then
// dropped. Tool handlers are not given the request's id, but mcp-go's
// request-initialization hook is, and may refuse the request before
// anything runs: skipCancelled refuses one the client has cancelled, and
// the transport drops the refusal as it drops any response to a cancelled
// request.

type sessionRequestsKey struct{}

// requestIDMeta is the _meta field of a tool call in which tagRequest
// hands the call's request id (idKey) to its handler, which mcp-go does
// not give it; one a client sends is overwritten.
const requestIDMeta = "parley/requestId"

// tagRequest, mcp-go's OnBeforeCallTool hook, puts the call's request id
// in its _meta (requestIDMeta), where handle finds it to watch for the
// client cancelling the call. mcp-go hands the hook the request that it
// then passes to the tool's handler.
func tagRequest(_ context.Context, id any, req *mcpgo.CallToolRequest) {
	raw, err := json.Marshal(id)
	if err != nil {
		return
	}
	if req.Params.Meta == nil {
		req.Params.Meta = &mcpgo.Meta{}
	}
	if req.Params.Meta.AdditionalFields == nil {
		req.Params.Meta.AdditionalFields = map[string]any{}
	}
	req.Params.Meta.AdditionalFields[requestIDMeta] = idKey(raw)
}

// watchCancel has the client's cancellation of req, a tool call of a
// stdio or HTTP+SSE session, end the call with end, until the returned
// func is called. Over streamable HTTP, where the request's context ends
// the call, it does nothing.
func watchCancel(ctx context.Context, req mcpgo.CallToolRequest, end context.CancelCauseFunc) (stop func()) {
	s, ok := ctx.Value(sessionRequestsKey{}).(sessionRequests)
	if !ok || req.Params.Meta == nil {
		return func() {}
	}
	id, _ := req.Params.Meta.AdditionalFields[requestIDMeta].(string)
	if id == "" {
		return func() {}
	}
	return s.pending.watch(s.session, id, end)
}

// sessionRequests are the requests a session's transport has yet to
// answer.
type sessionRequests struct {
	pending *pendingResponses
	session string
}

// withSessionRequests returns ctx carrying the requests of session in
// pending, for skipCancelled.
func withSessionRequests(ctx context.Context, pending *pendingResponses, session string) context.Context {
	return context.WithValue(ctx, sessionRequestsKey{}, sessionRequests{pending, session})
}

// skipCancelled, mcp-go's OnRequestInitialization hook, refuses the
// request with id if its client has cancelled it. id is as mcp-go decoded
// it (a number is a float64), which idKey of its JSON matches.
func skipCancelled(ctx context.Context, id any, _ any) error {
	s, ok := ctx.Value(sessionRequestsKey{}).(sessionRequests)
	if !ok {
		return nil
	}
	raw, err := json.Marshal(id)
	if err != nil || !s.pending.cancelled(s.session, idKey(raw)) {
		return nil
	}
	return errRequestCancelled
}

// idKey is the key of a JSON-RPC id: its JSON decoded and encoded again, so
// that the id a request came with, the requestId of a notifications/cancelled
// naming it and the id of its response, which mcp-go decodes and encodes
// again, match ("7" for 7.0 as for 7). It is "" for no id.
func idKey(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil || v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// cancelledRequest returns the key of the request a notifications/cancelled
// names; ok is false when msg is not one.
// Member names must be exact: encoding/json matches them regardless of
// case, and mcp-go refuses a message whose names are not its own, which
// must not cancel anything here either.
func cancelledRequest(msg []byte) (id string, ok bool) {
	var quick struct {
		Method string `json:"method"`
	}
	if json.Unmarshal(msg, &quick) != nil || quick.Method != string(mcpgo.MethodNotificationCancelled) {
		return "", false // most messages: their members not copied
	}
	var n, params map[string]json.RawMessage
	var method string
	if json.Unmarshal(msg, &n) != nil || json.Unmarshal(n["method"], &method) != nil ||
		method != string(mcpgo.MethodNotificationCancelled) || json.Unmarshal(n["params"], &params) != nil {
		return "", false
	}
	id = idKey(params["requestId"])
	return id, id != ""
}

// lineFilter passes a stream of lines on a whole line at a time, leaving
// out those keep refuses. keep sees each line (without its newline, and an
// unended last line at the end of the stream) before the reader has it,
// and must not keep it. A line longer than max bytes (0: no limit) is
// dropped as it arrives, not held: a sink tooLong returns for it reads it
// instead, a piece at a time.
type lineFilter struct {
	r       io.Reader
	keep    func(line []byte) bool
	max     int
	tooLong func() lineSink
	buf     []byte   // for reading r
	out     []byte   // lines kept, not yet read
	part    []byte   // the start of a line not yet ended
	over    lineSink // the line being read is over max: it goes here
	err     error    // r's, returned once out is read
}

// A lineSink reads a line over a lineFilter's limit as it arrives (Write),
// until it ends (End).
type lineSink interface {
	io.Writer
	End()
}

func (f *lineFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 && f.err == nil {
		if f.buf == nil {
			f.buf = make([]byte, 32<<10)
		}
		n, err := f.r.Read(f.buf)
		data := f.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				f.extend(data)
				break
			}
			f.extend(data[:i])
			f.end(true)
			data = data[i+1:]
		}
		if err != nil {
			if len(f.part) > 0 || f.over != nil {
				f.end(false)
			}
			f.err = err
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	if len(f.out) == 0 {
		f.out = nil
		return n, f.err
	}
	return n, nil
}

// extend adds b to the line being read, unless that takes it over the
// limit: then the line goes to a sink, and is not held.
func (f *lineFilter) extend(b []byte) {
	if f.over != nil {
		_, _ = f.over.Write(b)
		return
	}
	f.part = append(f.part, b...)
	if f.max > 0 && len(f.part) > f.max {
		f.over = f.tooLong()
		_, _ = f.over.Write(f.part)
		f.part = nil // not the line's memory kept for the next
	}
}

// end ends the line being read: keep or the line's sink sees it.
func (f *lineFilter) end(ended bool) {
	switch {
	case f.over != nil:
		f.over.End()
	case f.keep(f.part):
		f.out = append(f.out, f.part...)
		if ended {
			f.out = append(f.out, '\n')
		}
	}
	f.part, f.over = f.part[:0], nil
	if cap(f.part) > keptLineBytes {
		f.part = nil // one large message's memory is not kept for the session
	}
}

// keptLineBytes bounds the line buffer a lineFilter keeps between lines.
const keptLineBytes = 64 << 10

// errRequestCancelled ends a request its client cancelled; it is a
// context.Canceled, so a completion's usage is recorded as the client's
// disconnect.
var errRequestCancelled = fmt.Errorf("the client cancelled the request: %w", context.Canceled)

// pendingResponses counts the requests whose response a session has yet
// to write, by session and request id (idKey), and knows which of them the
// client cancelled: those get no response, and the tool calls serving them
// are ended (see the top of this file).
type pendingResponses struct {
	mu       sync.Mutex
	sessions map[string]map[string]*pendingRequest // session → request id
	n        inFlight
}

// pendingRequest is a request still to be answered.
type pendingRequest struct {
	cancelled bool
	calls     []*context.CancelCauseFunc // the ends of the tool calls serving it (watch)
}

func (p *pendingResponses) add(session, id string) { p.tryAdd(session, id, 0) }

// tryAdd is add, unless the session has max requests pending already (max
// > 0): then it adds nothing and says so.
func (p *pendingResponses) tryAdd(session, id string, max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions == nil {
		p.sessions = map[string]map[string]*pendingRequest{}
	}
	ids := p.sessions[session]
	if ids == nil {
		ids = map[string]*pendingRequest{}
		p.sessions[session] = ids
	}
	if _, ok := ids[id]; ok {
		return true
	}
	if max > 0 && len(ids) >= max {
		return false
	}
	ids[id] = &pendingRequest{}
	p.n.add(1)
	return true
}

// cancel notes that the client cancelled the request, if it is pending,
// and ends the tool call serving it.
func (p *pendingResponses) cancel(session, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	if req == nil {
		return
	}
	req.cancelled = true
	for _, end := range req.calls {
		(*end)(errRequestCancelled)
	}
}

// cancelled says whether the client cancelled the pending request.
func (p *pendingResponses) cancelled(session, id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	return req != nil && req.cancelled
}

// watch has cancel end the tool call serving the pending request with
// end, until the returned func is called; a request cancelled already is
// ended at once.
func (p *pendingResponses) watch(session, id string, end context.CancelCauseFunc) (stop func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	if req == nil {
		return func() {}
	}
	if req.cancelled {
		end(errRequestCancelled)
		return func() {}
	}
	ref := &end
	req.calls = append(req.calls, ref)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if i := slices.Index(req.calls, ref); i >= 0 {
			req.calls = slices.Delete(req.calls, i, i+1)
		}
	}
}

func (p *pendingResponses) remove(session, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.sessions[session]
	if _, ok := ids[id]; ok {
		delete(ids, id)
		if len(ids) == 0 {
			delete(p.sessions, session)
		}
		p.n.add(-1)
	}
}

// forget drops a session that ended: its responses will not be written.
func (p *pendingResponses) forget(session string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.sessions[session])
	delete(p.sessions, session)
	p.n.add(-n)
}

func (p *pendingResponses) wait(ctx context.Context) error {
	p.mu.Lock()
	zero := p.n.zero
	p.mu.Unlock()
	return waitZero(ctx, zero)
}
