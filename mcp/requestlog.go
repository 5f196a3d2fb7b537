package mcp

import (
	"context"
	"log/slog"

	"github.com/parleyhq/parley/internal/requestid"
)

// requestLog is the handler of the logger mcp-go writes its mcp.request
// and mcp.tool lines to (server.WithLogger). Those lines copy what the
// client sent: a method or tool name of any length, in mcp.method and in
// error ("Method … not found"), which would let any key write megabytes
// of log per request; and mcp.session.id is the session id mcp-go knows,
// which over streamable HTTP is the one bindSession derived, not the one
// the client holds; and its outcome (of the call: ok, error_result) would
// repeat the key of the completion's outcome, which the request's lines
// carry (a JSON reader keeps the last). requestLog caps every string at
// maxLoggedString bytes, names the session as the client does, and names
// mcp-go's outcome mcp.outcome.
type requestLog struct{ slog.Handler }

// maxLoggedString is the most of a string requestLog writes: room for
// any method, tool name or error message of Parley's own.
const maxLoggedString = 256

func (h requestLog) Handle(ctx context.Context, r slog.Record) error {
	client := clientSessionFrom(ctx)
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case a.Key == "mcp.session.id" && client != "":
			a.Value = slog.StringValue(client)
		case a.Key == "outcome":
			a.Key = "mcp.outcome"
		}
		if a.Value.Kind() == slog.KindString {
			a.Value = slog.StringValue(requestid.Capped(a.Value.String(), maxLoggedString))
		}
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h requestLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestLog{h.Handler.WithAttrs(attrs)}
}

func (h requestLog) WithGroup(name string) slog.Handler { return requestLog{h.Handler.WithGroup(name)} }

type clientSessionKey struct{}

// withClientSession returns ctx carrying the session id the client sent,
// before bindSession replaced it, for requestLog.
func withClientSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, clientSessionKey{}, id)
}

func clientSessionFrom(ctx context.Context) string {
	id, _ := ctx.Value(clientSessionKey{}).(string)
	return id
}
