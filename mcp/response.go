package mcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// plainErrors is the writer of a streamable HTTP request that puts the
// plain-text errors mcp-go writes (a malformed or missing Mcp-Session-Id,
// a Content-Type other than JSON, an unsupported MCP-Protocol-Version)
// into REST's error envelope, which every other refusal of the MCP
// endpoints (guard's) is in: a client parses one shape. finish writes the
// envelope once the handler returned.
type plainErrors struct {
	http.ResponseWriter
	status int          // of a plain-text error held back; 0 if none
	text   bytes.Buffer // its message
}

// maxPlainError caps the message of a plain-text error kept; mcp-go's
// are one line.
const maxPlainError = 1 << 10

func (w *plainErrors) WriteHeader(status int) {
	if w.status == 0 && status >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.status = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *plainErrors) Write(p []byte) (int, error) {
	if w.status != 0 {
		w.text.Write(p[:min(len(p), max(0, maxPlainError-w.text.Len()))])
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes, unless an error is held back: flushing would send
// its header.
func (w *plainErrors) FlushError() error {
	if w.status != 0 {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush makes the writer an http.Flusher, which mcp-go streams only to.
func (w *plainErrors) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *plainErrors) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the error held back, if any, as the envelope. mcp-go
// answers a request without a session id as one with an unknown id (404,
// which tells a client its session is gone); the protocol asks for 400,
// and the message says what to send. A Content-Type it refuses is said
// in REST's words.
func (w *plainErrors) finish(r *http.Request) {
	if w.status == 0 {
		return
	}
	status, msg := w.status, strings.TrimSpace(w.text.String())
	switch {
	case status == http.StatusNotFound && r.Header.Get(server.HeaderKeySessionID) == "":
		status, msg = http.StatusBadRequest, "Mcp-Session-Id is required: send the session id that initialize returned"
	case status == http.StatusNotFound:
		msg = "unknown Mcp-Session-Id: send the session id that initialize returned, or initialize a new session"
	case status == http.StatusBadRequest && strings.HasPrefix(msg, "Invalid content type"):
		msg = "Content-Type must be application/json"
	case msg == "":
		msg = http.StatusText(status)
	}
	code := domain.Invalid.String()
	switch {
	case status == http.StatusNotFound:
		code = domain.NotFound.String()
	case status >= 500:
		code = domain.Internal.String()
	}
	writeError(w.ResponseWriter, status, code, msg)
}

// keptAlive is the writer of a streamable HTTP call's response that keeps
// a quiet response alive, as REST streams and HTTP+SSE sessions are kept:
// proxies close a connection that has carried nothing for a minute or
// so, and a completion may think for longer. mcp-go answers a call with
// JSON, or with an event stream once the call sends a notification
// (progress); it writes nothing while the call runs. Once the response
// has been quiet for every:
//   - before mcp-go wrote anything, keptAlive opens an event stream itself
//     (the protocol lets a server answer any request with one) and sends
//     an SSE comment; a JSON answer mcp-go writes later goes out as that
//     stream's one event;
//   - on an event stream, it sends an SSE comment between mcp-go's events,
//     each of which mcp-go writes in one Write.
//
// A client that accepts no event stream gets no keep-alives. end stops
// them and writes a JSON answer held back. mcp-go sets its headers in a
// map of keptAlive's own (hdr), passed on with its WriteHeader: a
// keep-alive that opens the stream sets the response's at the same
// moment, from the timer's goroutine.
type keptAlive struct {
	http.ResponseWriter
	rc    *http.ResponseController
	every time.Duration
	hdr   http.Header

	mu      sync.Mutex // one writer at a time: mcp-go's or a keep-alive
	timer   *time.Timer
	opened  bool      // keptAlive opened the event stream
	headers bool      // mcp-go wrote its header
	sse     bool      // the response is an event stream
	json    bool      // mcp-go answers JSON into the stream keptAlive opened
	wrote   time.Time // of the last write
	held    bytes.Buffer
	ended   bool
}

// withKeepAlives returns w, kept alive every so often while r's response is
// served, and the func that ends that once the handler returned.
func withKeepAlives(w http.ResponseWriter, r *http.Request, every time.Duration) (http.ResponseWriter, func()) {
	if !acceptsEventStream(r.Header.Get("Accept")) {
		return w, func() {}
	}
	k := &keptAlive{ResponseWriter: w, rc: http.NewResponseController(w), every: every, hdr: http.Header{}, wrote: time.Now()}
	k.mu.Lock()
	k.timer = time.AfterFunc(every, k.tick)
	k.mu.Unlock()
	return k, k.end
}

// acceptsEventStream says whether an Accept header takes text/event-stream.
func acceptsEventStream(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		media, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "text/event-stream", "text/*", "*/*":
			return true
		}
	}
	return false
}

func (k *keptAlive) tick() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended {
		return
	}
	if k.headers && !k.sse { // a JSON answer is being written
		return
	}
	if quiet := time.Since(k.wrote); quiet < k.every {
		k.timer.Reset(k.every - quiet)
		return
	}
	if !k.headers && !k.opened {
		h := k.ResponseWriter.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		k.ResponseWriter.WriteHeader(http.StatusOK)
		k.opened, k.sse = true, true
	}
	if _, err := k.ResponseWriter.Write([]byte(": keep-alive\n\n")); err == nil {
		_ = k.rc.Flush()
	}
	k.wrote = time.Now()
	k.timer.Reset(k.every)
}

// Header is the header mcp-go, and the writers above keptAlive, set.
func (k *keptAlive) Header() http.Header { return k.hdr }

func (k *keptAlive) WriteHeader(status int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writeHeader(status)
}

// writeHeader passes mcp-go's header on, unless keptAlive opened the
// stream already: then mcp-go's answer goes into it, and a JSON one is
// held for end (json).
func (k *keptAlive) writeHeader(status int) {
	if k.headers {
		return
	}
	k.headers = true
	sse := strings.HasPrefix(k.hdr.Get("Content-Type"), "text/event-stream")
	if k.opened {
		k.json = !sse
		return
	}
	k.sse = sse
	h := k.ResponseWriter.Header()
	for name, v := range k.hdr {
		h[name] = v
	}
	k.ResponseWriter.WriteHeader(status)
}

func (k *keptAlive) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writeHeader(http.StatusOK)
	if k.json {
		return k.held.Write(p)
	}
	n, err := k.ResponseWriter.Write(p)
	k.wrote = time.Now()
	return n, err
}

// FlushError flushes; before mcp-go's header, it passes that on with a
// 200, as net/http's flush would.
func (k *keptAlive) FlushError() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writeHeader(http.StatusOK)
	return k.rc.Flush()
}

// Flush makes the writer an http.Flusher, which mcp-go streams only to.
func (k *keptAlive) Flush() { _ = k.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (k *keptAlive) Unwrap() http.ResponseWriter { return k.ResponseWriter }

// end stops the keep-alives and sends a JSON answer held back as the
// stream's event.
func (k *keptAlive) end() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ended = true
	k.timer.Stop()
	if msg := bytes.TrimSpace(k.held.Bytes()); len(msg) > 0 && json.Valid(msg) {
		var ev bytes.Buffer
		ev.WriteString("event: message\ndata: ")
		_ = json.Compact(&ev, msg)
		ev.WriteString("\n\n")
		if _, err := k.ResponseWriter.Write(ev.Bytes()); err == nil {
			_ = k.rc.Flush()
		}
	}
}
