package mcp

import (
	"bytes"
	"encoding/json"
	"io"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// A request the client cancels with notifications/cancelled gets no
// response: the protocol says the receiver SHOULD NOT send one (and the
// sender ignores one that comes anyway, though some clients log it as a
// response to an unknown id, or reconnect). mcp-go (v1.2.1) cancels the
// handler's context and then answers all the same, with the error the
// handler returned (errCanceled, JSON-RPC -32603): HandleMessage returns a
// response for every request and each transport writes it, with no hook
// between the two. So Parley's transports leave it out:
//   - over stdio and HTTP+SSE, where a session's responses share one
//     stream, the stream drops the response to a request the client
//     cancelled (pendingResponses);
//   - over streamable HTTP, where each request has a response of its own,
//     the request's context is ended, on which mcp-go writes nothing, and
//     its response is an event stream that ends empty (liveRequests).

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
func cancelledRequest(msg []byte) (id string, ok bool) {
	var n struct {
		Method string `json:"method"`
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	if json.Unmarshal(msg, &n) != nil || n.Method != string(mcpgo.MethodNotificationCancelled) {
		return "", false
	}
	id = idKey(n.Params.RequestID)
	return id, id != ""
}

// lineWatcher passes a stream of lines through, calling seen with each line
// (without its newline) as it goes by, before the reader has it, and with
// an unended last line at the end of the stream. seen must not keep the
// line.
type lineWatcher struct {
	r    io.Reader
	seen func(line []byte)
	part []byte // the start of a line not yet ended
}

func (w *lineWatcher) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	data := p[:n]
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			w.part = append(w.part, data...)
			break
		}
		if len(w.part) == 0 {
			w.seen(data[:i])
		} else {
			w.part = append(w.part, data[:i]...)
			w.seen(w.part)
			w.part = w.part[:0]
		}
		data = data[i+1:]
	}
	if err == io.EOF && len(w.part) > 0 {
		w.seen(w.part)
		w.part = w.part[:0]
	}
	return n, err
}
