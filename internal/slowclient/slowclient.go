// Package slowclient bounds what a client that sends or reads slowly can
// hold of the server: a request body must arrive within a time, and a
// write the client does not take in time is cut. Without them such a
// client holds a goroutine, its buffers and its connection for as long as
// it likes. net/http's own bounds (the server's ReadTimeout and
// WriteTimeout) are for the whole request and the whole response, and
// would cut healthy streams, which run for many minutes: Parley's server
// sets neither, and bounds each request's body and writes here instead.
package slowclient

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrBodyTimeout is ReadBody's error for a body that did not arrive in time.
var ErrBodyTimeout = errors.New("the request body did not arrive in time")

// BodyTimeoutMessage is what a client whose body did not arrive within
// timeout is told, on REST and MCP alike.
func BodyTimeoutMessage(timeout time.Duration) string {
	return "the request body did not arrive whole within " + timeout.String() + "; send it again"
}

// ReadBody reads body, the request's, whole, allowing it timeout from now
// to arrive (a read deadline on w's connection). A writer that takes no
// deadlines (httptest's recorder) reads without one.
func ReadBody(w http.ResponseWriter, body io.Reader, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	b, err := io.ReadAll(body)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline stays: before it writes the answer, net/http reads
		// what is left of the body to keep the connection, which would
		// wait for the client again; it fails at once, and the connection
		// is closed after the answer.
		return nil, ErrBodyTimeout
	case err == nil && deadline:
		// Cleared as soon as the body is read: net/http then reads on in
		// the background to see the client leave, and a deadline passing
		// there would end the request's context.
		_ = rc.SetReadDeadline(time.Time{})
	}
	return b, err
}

// MinStall is the shortest a write to a client may block before it is cut.
const MinStall = time.Second

// StallAfter is how long a write to a client may block before it is cut,
// for keep-alive interval keepAlive: twice the longest a stream goes
// without writing, and at least MinStall. REST and MCP over HTTP cut at it.
func StallAfter(keepAlive time.Duration) time.Duration { return max(2*keepAlive, MinStall) }

// Writer cuts a write the client does not take in time. A client that
// keeps its connection but stops reading would otherwise block the write
// for as long as it likes, and with it what waits for the write: the
// handler's goroutine, what it holds (a stream's calls, a large response)
// and the connection, and the server's shutdown.
//
// Each write and flush gets a write deadline after from its start, a
// large write each Piece of it, so that a client that reads, only slowly,
// is not cut from a large response. A cut write fails, on which net/http
// ends the request's context and closes the connection. End clears the
// deadline for what net/http writes once the handler returns.
type Writer struct {
	http.ResponseWriter
	rc    *http.ResponseController
	after time.Duration
}

// NewWriter returns w's writer whose writes are cut after after.
func NewWriter(w http.ResponseWriter, after time.Duration) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w), after: after}
}

func (w *Writer) arm() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.after)) }

// End clears the write deadline.
func (w *Writer) End() { _ = w.rc.SetWriteDeadline(time.Time{}) }

// Piece is how much of a write has a write deadline of its own.
const Piece = 64 << 10

func (w *Writer) Write(p []byte) (n int, err error) {
	if len(p) == 0 {
		w.arm()
		return w.ResponseWriter.Write(p)
	}
	for len(p) > 0 {
		piece := p[:min(len(p), Piece)]
		w.arm()
		m, err := w.ResponseWriter.Write(piece)
		n += m
		if err != nil {
			return n, err
		}
		p = p[len(piece):]
	}
	return n, nil
}

// FlushError is what http.ResponseController's Flush calls.
func (w *Writer) FlushError() error {
	w.arm()
	return w.rc.Flush()
}

// Flush makes the writer an http.Flusher, which some handlers (mcp-go's
// streams) write only to.
func (w *Writer) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
