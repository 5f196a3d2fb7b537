package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// Caller says who a stdio session acts as. ServeStdio asks it at every
// tool call, not once at the start: a session lives as long as the agent
// that started it, and a key revoked meanwhile must stop working there as
// it does over HTTP, where every request brings its key.
type Caller func(ctx context.Context) (domain.Principal, error)

// StdioWorkers is how many tool calls a stdio session runs at a time; the
// rest wait their turn. mcp-go's default, five, made an agent's reads
// (list-projects, get-chat) wait behind five running completions.
const StdioWorkers = 16

// Fixed is the Caller that is always p: the local admin, who has no key.
func Fixed(p domain.Principal) Caller {
	return func(context.Context) (domain.Principal, error) { return p, nil }
}

type callerKey struct{}

// callerFrom returns the Caller ServeStdio put in ctx, nil over HTTP,
// where guard put the principal itself.
func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// ServeStdio serves srv over stdio (in, out) as caller until in ends, a
// write to out fails or ctx is cancelled. out carries only the protocol;
// mcp-go's own errors are logged to logger (nil: slog.Default()) at error
// level. The progress notifications written to out are recorded, so that
// a streamed call's result follows its notifications (progressLog), and a
// request the client cancels gets no response (stdioOutput). A message
// over maxMessageBytes (0: domain.DefaultMaxBodyBytes), which mcp-go would hold
// whole however long, is dropped as it arrives and answered with an
// Invalid Request error (tooLongMessage).
func ServeStdio(ctx context.Context, srv *server.MCPServer, caller Caller, maxMessageBytes int64, in io.Reader, out io.Writer, logger *slog.Logger) error {
	if maxMessageBytes <= 0 {
		maxMessageBytes = domain.DefaultMaxBodyBytes
	}
	if logger == nil {
		logger = slog.Default()
	}
	// A write to out that fails (the agent closed its end, or died) ends
	// the session as its input ending does: its calls are cancelled and
	// recorded as the client leaving, rather than run on for no one.
	ctx, endSession := context.WithCancel(ctx)
	defer endSession()
	// The agent left: set before the calls' contexts are cancelled, and
	// asked before a call runs. mcp-go runs StdioWorkers calls at a time
	// and queues the rest; when the session's context is cancelled, a call
	// it cancels first can end, and its worker take a queued call, before
	// the cancellation reaches that call's context, which would then run
	// (and reach the provider) for an agent that has gone.
	var left atomic.Bool
	s := server.NewStdioServer(srv)
	server.WithWorkerPoolSize(StdioWorkers)(s)
	s.SetErrorLogger(slog.NewLogLogger(logger.Handler(), slog.LevelError))
	progress, pending := &progressLog{}, &pendingResponses{}
	who := Caller(func(ctx context.Context) (domain.Principal, error) {
		if left.Load() {
			return domain.Principal{}, domain.Errorf(domain.Canceled, "the agent closed the session before this call began; it was not run")
		}
		return caller(ctx)
	})
	s.SetContextFunc(func(ctx context.Context) context.Context {
		ctx = withSessionRequests(context.WithValue(ctx, callerKey{}, who), pending, stdioSession)
		return withProgressLog(ctx, progress)
	})
	var once sync.Once
	output := stdioOutput{out, &sync.Mutex{}, progress, pending, func(err error) {
		once.Do(func() {
			logger.Info("ending the stdio session: its output cannot be written", "error", err)
			left.Store(true)
			endSession()
		})
	}}
	in = &endedReader{r: in, ended: func() { left.Store(true) }}
	keep := func(msg []byte) bool {
		// What it holds bounds what mcp-go's decoding costs, as over HTTP.
		if err := wire.Bounded(msg); err != nil {
			if m, ok := readJSONRPC(msg); ok {
				_, _ = output.Write(invalidRequest(m.ID, domain.MessageOf(err)+"; the message was dropped"))
			}
			return false
		}
		return watchRequests(pending, msg)
	}
	in = &lineFilter{r: in, keep: keep,
		max: int(min(maxMessageBytes, math.MaxInt32)), tooLong: func() lineSink {
			return &tooLongLine{answer: func(id json.RawMessage) {
				_, _ = output.Write(tooLongMessage(id, maxMessageBytes))
			}}
		}}
	err := s.Listen(ctx, in, output)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// endedReader calls ended when r ends (or fails), before its caller
// learns of it.
type endedReader struct {
	r     io.Reader
	ended func()
}

func (e *endedReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.ended()
	}
	return n, err
}

// stdioSession is the key of the one session of a stdio server in its
// pendingResponses.
const stdioSession = ""

// watchRequests notes in pending the request msg is or, if it is a
// notifications/cancelled, cancels the request it names. It sees each
// message the client sends over stdio before mcp-go does, and says whether
// mcp-go is to see it: never a cancellation, which Parley carries out
// itself (see cancel.go).
func watchRequests(pending *pendingResponses, msg []byte) bool {
	if m, ok := readJSONRPC(msg); ok {
		if m.Method != "" && (len(m.Version) == 0 || m.Version[0] == '"') {
			// (mcp-go answers a version that is no string with id null:
			// no response would settle it.)
			pending.add(stdioSession, idKey(m.ID))
		}
		return true
	}
	if id, ok := cancelledRequest(msg); ok {
		pending.cancel(stdioSession, id)
		return false
	}
	return true
}

// tooLongMessage is the answer to a message over the limit of limit bytes
// whose request id is id: an Invalid Request error.
func tooLongMessage(id json.RawMessage, limit int64) []byte {
	return invalidRequest(id, "the message is over the "+strconv.FormatInt(limit, 10)+
		"-byte limit (PARLEY_MAX_BODY_BYTES) and was dropped; send a smaller one")
}

// invalidRequest is JSON-RPC's Invalid Request error for the request id,
// saying message, as a line of stdio's output.
func invalidRequest(id json.RawMessage, message string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": -32600, "message": message}})
	return append(b, '\n')
}

// tooLongLine reads a message over the limit as it arrives, without
// holding it, for the one thing its answer needs: the request's id, the
// value of the top-level object's "id" member wherever it comes (the
// TypeScript SDK writes it last, after the params). When it ends, answer
// is given that id, or null (JSON-RPC's id when the request's cannot be
// read): not a string, number or null, over maxIDBytes, or never ended.
type tooLongLine struct {
	answer func(id json.RawMessage)

	depth     int  // 1: inside the top-level object
	inString  bool // in a string, at any depth
	escaped   bool // after a backslash in a string
	expectKey bool // the next string at depth 1 is a member's name
	inKey     bool // reading a member's name at depth 1
	key       []byte
	idNext    bool // the last name at depth 1 was "id": its value follows ':'
	inID      bool // reading the id's value
	value     []byte
	id        json.RawMessage
}

// maxIDBytes bounds the request id tooLongLine keeps.
const maxIDBytes = 1 << 10

func (l *tooLongLine) Write(p []byte) (int, error) {
	for _, c := range p {
		l.scan(c)
	}
	return len(p), nil
}

func (l *tooLongLine) scan(c byte) {
	if l.inID {
		if len(l.value) == maxIDBytes {
			l.inID = false // too long to be anyone's id
		} else {
			l.value = append(l.value, c)
		}
	}
	if l.inString {
		switch {
		case l.escaped:
			l.escaped = false
		case c == '\\':
			l.escaped = true
		case c == '"':
			l.inString = false
			if l.inKey {
				l.inKey, l.idNext = false, string(l.key) == "id"
			}
			return
		}
		if l.inKey && len(l.key) < len("id")+1 {
			l.key = append(l.key, c)
		}
		return
	}
	switch c {
	case '"':
		l.inString = true
		if l.depth == 1 && l.expectKey {
			l.inKey, l.expectKey, l.key = true, false, l.key[:0]
		}
	case '{', '[':
		l.depth++
		l.expectKey = l.depth == 1 && c == '{'
	case '}', ']':
		if l.depth == 1 {
			l.endID()
		}
		l.depth--
	case ',':
		if l.depth == 1 {
			l.endID()
			l.expectKey = true
		}
	case ':':
		if l.depth == 1 && l.idNext {
			l.idNext, l.inID, l.value = false, true, l.value[:0]
		}
	}
}

// endID ends the id's value at the ',' or '}' that follows it (which
// value holds last).
func (l *tooLongLine) endID() {
	if !l.inID {
		return
	}
	l.inID = false
	v := bytes.TrimSpace(l.value[:len(l.value)-1])
	if len(v) > 0 && (v[0] == '"' || v[0] == '-' || v[0] >= '0' && v[0] <= '9' || string(v) == "null") && json.Valid(v) {
		l.id = append(l.id[:0], v...)
	}
}

func (l *tooLongLine) End() {
	id := l.id
	if id == nil {
		id = json.RawMessage("null")
	}
	l.answer(id)
}

// stdioOutput is a stdio session's output: it records the progress
// notifications written in progress, and drops the response to a request
// the client cancelled. mcp-go writes each message, a line of JSON, in one
// Write; mu keeps its writes and the reader's (tooLongMessage) whole.
type stdioOutput struct {
	io.Writer
	mu       *sync.Mutex
	progress *progressLog
	pending  *pendingResponses
	broken   func(error) // called when a write fails
}

func (w stdioOutput) Write(p []byte) (int, error) {
	var response string // the id of the request it answers
	if m, ok := readJSONRPC(p); ok && m.Method == "" {
		response = idKey(m.ID)
		if w.pending.cancelled(stdioSession, response) {
			w.pending.remove(stdioSession, response)
			return len(p), nil
		}
	}
	w.mu.Lock()
	n, err := w.Writer.Write(p)
	w.mu.Unlock()
	if response != "" {
		w.pending.remove(stdioSession, response)
	}
	if err != nil {
		w.broken(err)
		return n, err
	}
	w.progress.wrote(p)
	return n, nil
}
