package mcp

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

const (
	// settlePause is how long a streamed completion waits, once its
	// progress notifications are written (stdio, HTTP+SSE: progressLog)
	// or queued (streamable HTTP), before returning the result. A client
	// may not have handled notifications that reach it in the same read
	// as the result: the TypeScript SDK dispatches notifications on a
	// later microtask but settles the result at once, dropping its
	// progress handler, so the last deltas would be lost.
	settlePause = 50 * time.Millisecond
	// writtenWait bounds how long a streamed completion's result waits for
	// the call's progress notifications to be written to a stdio or
	// HTTP+SSE session, so that a client that stopped reading cannot hold
	// the call forever.
	writtenWait = 10 * time.Second
	// blockedWait bounds how long one notification waits for room in a
	// session's full notification queue before it is dropped.
	blockedWait = 5 * time.Second
)

// progressEmitter sends each delta of a streamed completion to the caller
// as a notifications/progress: progress counts the notifications (1, 2,
// ...) and message is the delta's text. A delta of the model's reasoning
// or of a tool call, and every heartbeat of quiet, goes without a message:
// a client whose timeout restarts on progress (the TypeScript SDK's
// resetTimeoutOnProgress) would otherwise time out, and cancel, a call
// whose model thinks, or writes a tool call's arguments, or takes long
// to answer at all.
type progressEmitter struct {
	ctx       context.Context
	srv       *server.MCPServer
	token     mcpgo.ProgressToken
	log       *slog.Logger
	metrics   Observer     // may be nil
	written   *progressLog // the session's, over stdio and HTTP+SSE; else nil
	started   bool         // counted as an open stream
	heartbeat time.Duration

	mu     sync.Mutex  // guards what follows, and the sending
	beat   *time.Timer // sends a notification after heartbeat of quiet
	ended  bool
	n      int // the notifications sent so far
	queued int // the progress of the last notification queued
}

// newProgressEmitter returns nil when the call carries no progress token,
// or came over streamable HTTP from a client that takes no event stream
// (jsonOnly), which mcp-go would answer with one to send notifications:
// the completion then does not stream.
func newProgressEmitter(ctx context.Context, req mcpgo.CallToolRequest, d deps) *progressEmitter {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil || jsonOnly(ctx) {
		return nil
	}
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		return nil
	}
	e := &progressEmitter{ctx: ctx, srv: srv, token: req.Params.Meta.ProgressToken, log: d.log, metrics: d.metrics,
		written: progressLogFrom(ctx), heartbeat: cmp.Or(d.heartbeat, domain.DefaultKeepAlive)}
	e.written.open(e.token)
	e.mu.Lock() // the heartbeat may come before the assignment is done
	e.beat = time.AfterFunc(e.heartbeat, func() { e.notify("") })
	e.mu.Unlock()
	return e
}

// emitter returns e as a domain.Emitter, or a nil interface when e is nil.
func (e *progressEmitter) emitter() domain.Emitter {
	if e == nil {
		return nil
	}
	return e
}

// Admitted implements domain.Emitter. MCP has no headers to send the
// quotas in, and they are not in the tool's result either: a refusal's
// text says which limit was reached and when it resets.
func (e *progressEmitter) Admitted([]domain.Quota) {}

// Start implements domain.Emitter: the stream is open from here on, as a
// REST stream is once its headers go out. The ids come with the result.
func (e *progressEmitter) Start(domain.CompletionMeta) error {
	if e.metrics != nil {
		e.metrics.StreamOpened()
		e.started = true
	}
	return nil
}

// Delta implements domain.Emitter: the text of each delta becomes a
// notification's message, a refusal's as a reply's (MCP's progress has one
// message; the result tells them apart); tool call pieces and the model's
// reasoning come as notifications without one (the result holds them).
// A notification that cannot be delivered is logged, never an error: the
// result still holds the whole reply.
func (e *progressEmitter) Delta(d domain.Delta) error {
	if text := d.Content + d.Refusal; text != "" || d.Reasoning != "" || len(d.ToolCalls) > 0 {
		e.notify(text)
	}
	return nil
}

// notify sends the next notification, with message unless it is "", and
// sets the heartbeat going again; nothing once the call ended.
func (e *progressEmitter) notify(message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return
	}
	defer e.beat.Reset(e.heartbeat)
	e.n++
	params := map[string]any{"progressToken": e.token, "progress": e.n}
	if message != "" {
		params["message"] = message
	}
	deadline := time.Now().Add(blockedWait)
	for {
		err := e.srv.SendNotificationToClient(e.ctx, string(mcpgo.MethodNotificationProgress), params)
		if err == nil {
			e.queued = e.n
			return
		}
		if !errors.Is(err, server.ErrNotificationChannelBlocked) || time.Now().After(deadline) {
			e.log.DebugContext(e.ctx, "progress notification dropped", "progress", e.n, "err", err)
			return
		}
		// The session's queue is full: wait for the writer to catch up
		// rather than drop a delta.
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// end closes the stream once the completion has returned: it is no longer
// counted as open, and end waits until the call's notifications reached
// the client's stream, so that every delta reaches the client before the
// result does. Over stdio and HTTP+SSE, whose sessions' calls share one
// stream, it waits until the session wrote the last notification queued
// (progressLog), at most writtenWait; over streamable HTTP, whose requests
// each have a queue of their own, until that queue is empty. Then
// settlePause more, for the client to handle them. A done ctx ends the
// wait.
func (e *progressEmitter) end(ctx context.Context) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.ended = true
	e.beat.Stop()
	e.mu.Unlock()
	if e.started {
		e.metrics.StreamClosed()
		e.started = false
	}
	if e.written != nil {
		defer e.written.close(e.token)
		if e.queued > 0 && !e.written.wait(ctx, e.token, e.queued) && ctx.Err() == nil {
			e.log.DebugContext(ctx, "progress notifications not written in time; returning the result",
				"progress", e.queued, "wait", writtenWait)
		}
	} else if s := server.ClientSessionFromContext(ctx); s != nil && e.n > 0 {
		ch := s.NotificationChannel()
		for deadline := time.Now().Add(time.Second); len(ch) > 0 && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if e.n == 0 {
		return
	}
	t := time.NewTimer(settlePause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// progressLog records, for one stdio or HTTP+SSE session, the progress of
// the last notification written to the client for each progress token of
// a streamed call still running. On these transports a session's calls
// share one notification queue and one stream, so only what was written
// tells a call that its own notifications are out: mcp-go writes the
// result as soon as the handler returns, and other calls' notifications
// keep the queue from ever emptying. The transport calls wrote with every
// message it writes; the methods are safe for concurrent use, and a nil
// *progressLog records nothing.
type progressLog struct {
	mu     sync.Mutex
	tokens map[string]*progressWritten // by progressKey
}

// progressWritten is what a progressLog knows of one progress token.
type progressWritten struct {
	calls    int           // the calls streaming with the token: one, unless a client reuses it
	progress float64       // the progress of the last notification written
	changed  chan struct{} // closed, and replaced, when progress changes
}

// progressKey is the key of a progress token, a string or a number: its
// JSON, which is the same for the token a call came with and the token
// read back from a notification.
func progressKey(token any) string {
	b, _ := json.Marshal(token)
	return string(b)
}

// open starts recording the notifications written for token.
func (l *progressLog) open(token any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tokens == nil {
		l.tokens = map[string]*progressWritten{}
	}
	k := progressKey(token)
	w := l.tokens[k]
	if w == nil {
		w = &progressWritten{changed: make(chan struct{})}
		l.tokens[k] = w
	}
	w.calls++
}

// close stops recording token once no call streams with it.
func (l *progressLog) close(token any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := progressKey(token)
	if w := l.tokens[k]; w != nil {
		if w.calls--; w.calls == 0 {
			delete(l.tokens, k)
		}
	}
}

// wait waits until the notification with the given progress for token
// was written, at most writtenWait, and says whether it was. A done ctx
// ends it.
func (l *progressLog) wait(ctx context.Context, token any, progress int) bool {
	k := progressKey(token)
	t := time.NewTimer(writtenWait)
	defer t.Stop()
	for {
		l.mu.Lock()
		w := l.tokens[k]
		if w == nil || w.progress >= float64(progress) {
			l.mu.Unlock()
			return w != nil
		}
		changed := w.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
}

// progressMethod is how a progress notification names its method in JSON.
var progressMethod = []byte(`"` + mcpgo.MethodNotificationProgress + `"`)

// wrote records msg, one JSON-RPC message the session wrote to the
// client, if it is a progress notification for a token being recorded.
func (l *progressLog) wrote(msg []byte) {
	if l == nil || !bytes.Contains(msg, progressMethod) {
		return
	}
	var n struct {
		Method string `json:"method"`
		Params struct {
			ProgressToken any     `json:"progressToken"`
			Progress      float64 `json:"progress"`
		} `json:"params"`
	}
	if json.Unmarshal(msg, &n) != nil || n.Method != string(mcpgo.MethodNotificationProgress) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.tokens[progressKey(n.Params.ProgressToken)]; w != nil && n.Params.Progress > w.progress {
		w.progress = n.Params.Progress
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

type progressLogKey struct{}

// withProgressLog returns ctx carrying l, the progress log of the session
// the calls started under ctx belong to.
func withProgressLog(ctx context.Context, l *progressLog) context.Context {
	return context.WithValue(ctx, progressLogKey{}, l)
}

// progressLogFrom returns the progressLog withProgressLog put in ctx, or
// nil (streamable HTTP).
func progressLogFrom(ctx context.Context) *progressLog {
	l, _ := ctx.Value(progressLogKey{}).(*progressLog)
	return l
}

type jsonOnlyKey struct{}

// withJSONOnly marks ctx as a request's whose client does not accept an
// event stream (its Accept header), so gets no progress notifications.
func withJSONOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, jsonOnlyKey{}, true)
}

func jsonOnly(ctx context.Context) bool { return ctx.Value(jsonOnlyKey{}) != nil }
