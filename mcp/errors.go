package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/internal/wire"
)

// Protocol errors carry only these generic texts; the cause is logged.
var (
	errInternal = errors.New("internal error: the server could not complete this tool call; the fault has been logged")
	errCanceled = errors.New("the tool call was cancelled")
)

// refuse answers a request the transport refuses (before any tool call:
// its origin, its key, its body, its session) with kind's status and the
// REST API's error envelope, as REST would answer it.
func refuse(w http.ResponseWriter, kind domain.Kind, message string) {
	writeError(w, wire.Status(kind), kind.String(), message)
}

// toolError maps a domain error to what the client gets, once for every
// tool. Every kind a caller can act on becomes a tool error result the model
// reads: its text starts with the REST error code ("not_found: chat cht_…
// does not exist") and goes on with the domain's user-safe message; a call
// the server's shutdown ended is "unavailable: ...", to be made again.
// Only Internal faults and cancellations become protocol errors, with a
// generic text. Each is logged at the level REST logs it at
// (domain.LogLevel).
func toolError(ctx context.Context, d deps, tool string, err error) (*mcpgo.CallToolResult, error) {
	log := d.log
	kind := domain.KindOf(err)
	// What the client sent (a tool's name, an argument's) at any length
	// is cut short in the log, as REST's refusals are.
	tool, logErr := requestid.Capped(tool, maxLoggedString), requestid.CappedError(err)
	if errors.Is(context.Cause(ctx), domain.ErrShuttingDown) {
		log.WarnContext(ctx, "mcp tool call ended by shutdown", "tool", tool, "err", logErr)
		return mcpgo.NewToolResultError(domain.Unavailable.String() + ": the server is shutting down and ended this call; call again"), nil
	}
	if kind == domain.Canceled || (ctx.Err() != nil && kind == domain.Internal) {
		log.DebugContext(ctx, "mcp tool call cancelled", "tool", tool, "err", logErr)
		return nil, errCanceled
	}
	level, msg := domain.LogLevel(err), "mcp tool call refused"
	switch {
	case errors.Is(err, domain.ErrShuttingDown):
		msg = "mcp tool call ended by shutdown"
	case kind == domain.Upstream || kind == domain.Timeout || errors.Is(err, domain.ErrUpstreamRateLimited):
		msg = "mcp tool call: upstream failed"
	case level == slog.LevelError:
		msg = "mcp tool call failed"
	}
	log.Log(ctx, level, msg, "tool", tool, "kind", kind.String(), "err", logErr)
	if kind == domain.Internal {
		return nil, errInternal
	}
	res := mcpgo.NewToolResultError(errorText(err))
	if dbg := wire.DebugOf(domain.DebugOf(err)); dbg != nil {
		// A completion that failed once it ran, asked for debug: what
		// went upstream, as a second text, {"debug": {...}}.
		if b, err := json.Marshal(struct {
			Debug *wire.Debug `json:"debug"`
		}{dbg}); err == nil {
			res.Content = append(res.Content, mcpgo.NewTextContent(string(b)))
		}
	}
	return res, nil
}

// refusedAtShutdown is the result of a call that would start once the server's
// shutdown began (Calls.Drain): the calls running may finish, but no new
// one starts, so the agent knows to call again once the server is back
// (or, behind a load balancer, on another instance).
func refusedAtShutdown(ctx context.Context, d deps, tool string) *mcpgo.CallToolResult {
	d.log.InfoContext(ctx, "mcp tool call refused: the server is shutting down", "tool", tool)
	return mcpgo.NewToolResultError(domain.Unavailable.String() + ": the server is shutting down and starts no more calls; call again once it is back")
}

// errorText is "<code>: <message>", plus for RateLimited when to retry and,
// for Parley's own limits, what REST's RateLimit-* headers say:
// "(retry after 12s; limit key-requests-per-minute: 600 per 60s,
// 0 remaining, resets in 12s)", and for a provider's refusal the parameter
// it named, which REST gives as error.details.upstreamParam.
func errorText(err error) string {
	kind := domain.KindOf(err)
	text := kind.String() + ": " + domain.MessageOf(err)
	if p, ok := domain.DetailsOf(err)["upstreamParam"].(string); ok && p != "" {
		text += fmt.Sprintf(" (the provider named the parameter %q)", p)
	}
	if kind != domain.RateLimited {
		return text
	}
	var notes []string
	if secs := domain.RetryAfterSeconds(err); secs > 0 {
		notes = append(notes, fmt.Sprintf("retry after %ds", secs))
	}
	if q, ok := domain.RefusedQuota(err); ok {
		limit := fmt.Sprintf("limit %s: %d", q.Name, q.Limit)
		if q.Window > 0 {
			limit += fmt.Sprintf(" per %ds", q.Window/time.Second)
		}
		notes = append(notes, limit+fmt.Sprintf(", %d remaining, resets in %ds", q.Remaining, q.Reset/time.Second))
	}
	if len(notes) > 0 {
		text += " (" + strings.Join(notes, "; ") + ")"
	}
	return text
}
