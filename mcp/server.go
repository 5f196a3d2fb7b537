// Package mcp serves Parley's domain as MCP tools with mcp-go, over stdio,
// SSE and streamable HTTP. Each tool is a constructor returning the tool and
// its handler; a handler decodes its typed arguments, calls one domain
// service method with the same input struct REST uses, and converts the
// result. No business rule lives here.
package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
)

// Options configure the MCP server.
type Options struct {
	// ReadOnly registers only the tools that change nothing
	// (--read-only, PARLEY_MCP_READ_ONLY=true).
	ReadOnly bool
	// Version is reported to clients in the initialize result.
	Version string
	// Logger receives tool failures and one line per request; it must not
	// write to stdout, which is the stdio transport's protocol stream. Nil
	// logs text to stderr.
	Logger *slog.Logger
	// Metrics, when set, counts streamed completions (calls with a progress
	// token) as open streams, as the REST API does. (Refusals by Parley's
	// limits are counted where the limiter is, see metrics.Limiter.)
	Metrics Observer
	// Calls, when set, tracks the running tool calls for the server's
	// shutdown: Calls.End ends them, Calls.Wait waits for them.
	Calls *Calls
	// CallTimeout bounds every tool call but completions (which run as
	// long as their upstream call, under its own timeouts; the domain
	// bounds their lookups), as REST's
	// RequestTimeout bounds requests: a database that hangs gives an
	// unavailable result in time. 0 means 30s.
	CallTimeout time.Duration
	// ProgressHeartbeat is how long a streamed completion may go without
	// a progress notification before one without a message goes out (see
	// progressEmitter); 0 means domain.DefaultKeepAlive, 15s.
	ProgressHeartbeat time.Duration
}

// Observer receives the metrics the MCP tools report; metrics.Metrics is
// one.
type Observer interface {
	StreamOpened()
	StreamClosed()
	ToolCalled(tool, outcome string, d time.Duration)
}

// instructions tell a model what the tools are for; readOnlyInstructions
// replace them in read-only mode, which has no tool to run a completion.
const (
	instructions = `Parley runs chat completions with context. A project owns AI providers, documents and chats; ` +
		`a chat stores a provider, a default system message and a model, so create-chat-completion-for-chat needs only messages. ` +
		`Pass the conversationId of a previous result, with only the new messages, to continue that conversation: ` +
		`only its messages are stored, so send again with each call what it needs of the rest (model, a system message, ` +
		`dataSources or names, tools, toolChoice, responseFormat, sampling parameters, maxHistoryMessages); a model or system message for every call ` +
		`is set on the chat with update-chat. ` +
		`list-models names the models a provider offers, for a completion's model. ` +
		noProjectTools + ` ` + listsAndErrors
	readOnlyInstructions = `Parley runs chat completions with context. A project owns AI providers, documents and chats; ` +
		`a chat's completions are stored as conversations. These tools only read: projects, AI providers and their models, chats, ` +
		`conversations and their messages, documents and usage. ` + listsAndErrors
	// noProjectTools is what instructions and an empty list of projects or
	// providers say of making them.
	noProjectTools = `These tools cannot make projects or AI providers: ask the user to make them over Parley's REST API ` +
		`(an owner or an admin: POST /api/v1/projects, then POST /api/v1/ai-providers) and to give you their ids.`
	listsAndErrors = `Lists return {data, nextCursor} (list-models returns {models}, whole): pass nextCursor as cursor for the next page; ` +
		`they go in the order their items were created, and order desc lists the most recently created first. ` +
		`A failed call's text starts with an error code (invalid_request, not_found, forbidden, rate_limited, upstream_error, ...) and says what to fix.`
)

// NewServer returns an MCP server with Parley's tools over svcs.
func NewServer(svcs *domain.Services, opts Options) *server.MCPServer {
	return newServer(svcs, opts)
}

func newServer(svcs *domain.Services, opts Options, extra ...server.ServerOption) *server.MCPServer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = domain.DefaultRequestTimeout
	}
	hooks := &server.Hooks{}
	hooks.AddOnRequestInitialization(skipCancelled)
	hooks.AddBeforeCallTool(tagRequest)
	text := instructions
	if opts.ReadOnly {
		text = readOnlyInstructions
	}
	sopts := append([]server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithInstructions(text),
		server.WithToolHandlerMiddleware(withRequestID), // outside WithLogger's, whose mcp.tool line names the id
		server.WithToolHandlerMiddleware(withMetrics(opts.Metrics)),
		server.WithLogger(slog.New(requestLog{opts.Logger.Handler()})),
		server.WithHooks(hooks),
	}, extra...)
	srv := server.NewMCPServer("parley", opts.Version, sopts...)
	d := deps{svcs: svcs, log: opts.Logger, metrics: opts.Metrics, calls: opts.Calls, callTimeout: opts.CallTimeout,
		heartbeat: opts.ProgressHeartbeat}
	for _, t := range toolset(d) {
		if opts.ReadOnly && !isReadOnly(t.tool) {
			continue
		}
		srv.AddTool(t.tool, t.handler)
	}
	return srv
}

// deps are what the tool constructors need.
type deps struct {
	svcs    *domain.Services
	log     *slog.Logger
	metrics Observer // may be nil
	calls   *Calls   // may be nil
	// callTimeout bounds the calls of tools other than completions.
	callTimeout time.Duration
	heartbeat   time.Duration // Options.ProgressHeartbeat
}

type serverTool struct {
	tool    mcpgo.Tool
	handler server.ToolHandlerFunc
}

// toolset lists every tool, read and write; read-only mode keeps those whose
// read-only annotation is set.
func toolset(d deps) []serverTool {
	ctors := []func(deps) (mcpgo.Tool, server.ToolHandlerFunc){
		listProjects, getProject, getUsage,
		listAIProviders, getAIProvider, listModels,
		listChats, getChat, createChat, updateChat, deleteChat,
		createChatCompletion, createChatCompletionForChat,
		listConversations, getConversation, listMessages, deleteConversation,
		listDocuments, getDocument, createDocument, updateDocument, deleteDocument,
	}
	out := make([]serverTool, 0, len(ctors))
	for _, c := range ctors {
		t, h := c(d)
		out = append(out, serverTool{tool: t, handler: h})
	}
	return out
}

func isReadOnly(t mcpgo.Tool) bool {
	return t.Annotations.ReadOnlyHint != nil && *t.Annotations.ReadOnlyHint
}

// hints sets all four annotations explicitly: mcp-go's defaults (destructive,
// not idempotent, open world) are wrong for most tools.
type hints struct {
	readOnly, destructive, idempotent, openWorld bool
}

var (
	// readHints fit every read tool: they change nothing and reach nothing
	// outside Parley.
	readHints = hints{readOnly: true, idempotent: true}
	// createHints fit tools that add a resource.
	createHints = hints{}
	// deleteHints fit tools that delete a resource: a repeat changes nothing more.
	deleteHints = hints{destructive: true, idempotent: true}
)

// newTool builds a tool whose schemas come from In and Out.
func newTool[In, Out any](name, title, description string, h hints) mcpgo.Tool {
	return mcpgo.NewTool(name,
		mcpgo.WithToolTitle(title),
		mcpgo.WithDescription(description),
		withSchemas[In, Out](),
		mcpgo.WithTitleAnnotation(title),
		mcpgo.WithReadOnlyHintAnnotation(h.readOnly),
		mcpgo.WithDestructiveHintAnnotation(h.destructive),
		mcpgo.WithIdempotentHintAnnotation(h.idempotent),
		mcpgo.WithOpenWorldHintAnnotation(h.openWorld),
	)
}

// withRequestID gives a tool call that came without a request id one of
// its own, which the lines logged in its course name: a call over stdio
// has no HTTP request to take an id from.
func withRequestID(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		if requestid.From(ctx) == "" {
			ctx = requestid.With(ctx, requestid.New())
		}
		return next(ctx, req)
	}
}

// withMetrics reports each tool call to m (nil: nothing), with its outcome
// (toolOutcome).
func withMetrics(m Observer) server.ToolHandlerMiddleware {
	return func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		if m == nil {
			return next
		}
		return func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			start := time.Now()
			res, err := next(ctx, req)
			m.ToolCalled(req.Params.Name, toolOutcome(res, err), time.Since(start))
			return res, err
		}
	}
}

// toolOutcome is a call's outcome as a metric label: "ok"; the error code
// a failed call's result starts with (errorText); "canceled" for a call
// the client cancelled; "internal" for any other protocol error.
func toolOutcome(res *mcpgo.CallToolResult, err error) string {
	switch {
	case errors.Is(err, errCanceled):
		return domain.Canceled.String()
	case err != nil || res == nil:
		return domain.Internal.String()
	case !res.IsError:
		return "ok"
	}
	if len(res.Content) > 0 {
		if text, ok := res.Content[0].(mcpgo.TextContent); ok {
			code, _, _ := strings.Cut(text.Text, ":")
			for k := domain.Internal; k <= domain.Canceled; k++ {
				if k.String() == code {
					return code // one of a few: a label
				}
			}
		}
	}
	return "error"
}

// completionTools begins the names of the completion tools, which run as
// long as their upstream call and so have no call timeout of their own.
const completionTools = "create-chat-completion"

// argErrorExplainer is a tool's arguments that say more of some
// refusals than decodeArgs can.
type argErrorExplainer interface {
	explainArgError(error) error
}

// handle returns a tool handler that decodes In strictly, calls fn, and
// returns Out as structured content with text's rendering. Errors of any
// step go through toolError, the one mapping of domain kinds.
func handle[In, Out any](d deps, fn func(ctx context.Context, req mcpgo.CallToolRequest, in In) (Out, error), text func(Out) string) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcpgo.CallToolRequest) (res *mcpgo.CallToolResult, err error) {
		defer func() {
			if r := recover(); r != nil {
				d.log.ErrorContext(ctx, "mcp tool panicked", "tool", req.Params.Name, "panic", r, "stack", string(debug.Stack()))
				res, err = nil, errInternal
			}
		}()
		// The call also ends when the server's shutdown ends it (Calls),
		// or when the HTTP+SSE stream it answers on closes (streamEnd):
		// mcp-go cancels neither.
		var end context.CancelCauseFunc
		ctx, end = context.WithCancelCause(ctx)
		defer end(nil)
		if d.calls != nil {
			stop, ok := d.calls.begin()
			if !ok {
				return refusedAtShutdown(ctx, d, req.Params.Name), nil
			}
			defer d.calls.done()
			defer context.AfterFunc(stop, func() { end(context.Cause(stop)) })()
		}
		if ended := streamEnd(ctx); ended != nil {
			defer context.AfterFunc(ended, func() { end(context.Cause(ended)) })()
		}
		// And when the client cancels it with notifications/cancelled
		// (stdio, HTTP+SSE; see cancel.go).
		defer watchCancel(ctx, req, end)()
		if !strings.HasPrefix(req.Params.Name, completionTools) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.callTimeout)
			defer cancel()
		}
		if who := callerFrom(ctx); who != nil { // stdio: the key may have been revoked since the last call
			p, err := who(ctx)
			if err != nil {
				return toolError(ctx, d, req.Params.Name, err)
			}
			ctx = domain.WithPrincipal(ctx, p)
			requestid.SetUser(ctx, p.UserID)
		}
		var in In
		if err := decodeArgs(req, &in); err != nil {
			if e, ok := any(&in).(argErrorExplainer); ok {
				err = e.explainArgError(err)
			}
			return toolError(ctx, d, req.Params.Name, err)
		}
		out, err := fn(ctx, req, in)
		if err != nil {
			return toolError(ctx, d, req.Params.Name, err)
		}
		res = &mcpgo.CallToolResult{Content: []mcpgo.Content{mcpgo.NewTextContent(text(out))}, StructuredContent: out}
		if res, err = fitResult(res, out); err != nil {
			return toolError(ctx, d, req.Params.Name, err)
		}
		return res, nil
	}
}

// maxResultBytes bounds a tool's result as JSON. The official MCP Go SDK
// reads at most 16 MiB in one message (a stdio line, an SSE event), and a
// longer one ends the session, and encoding/json, which mcp-go answers
// with, writes each <, > and & as six bytes: a 4 MiB HTML document, as
// text and as structured content, was an 18 MiB message.
const maxResultBytes = 12 << 20

// fitResult is res within maxResultBytes as JSON: as it is, or with its
// text, which repeats the structured content, replaced by a note saying
// so, or a TooLarge error when even the structured content is over. It
// encodes every result once to measure it (the structured content may
// hold what the text leaves out, a completion's reasoning), which costs
// microseconds for the usual results of a few kilobytes. out is the
// structured content: a page of a list (paged) that is over with one
// item, which fewer items cannot mend, is refused with the cursor past it.
func fitResult(res *mcpgo.CallToolResult, out any) (*mcpgo.CallToolResult, error) {
	size := func() int {
		b, err := json.Marshal(res)
		if err != nil {
			return 0 // mcp-go's encoding will say what is wrong
		}
		return len(b)
	}
	n := size()
	if n <= maxResultBytes {
		return res, nil
	}
	mib := float64(n) / (1 << 20)
	res.Content = []mcpgo.Content{mcpgo.NewTextContent(fmt.Sprintf(
		"This result is %.1f MiB as JSON, too large for one MCP message with its text too: it is in the structured content alone.", mib))}
	if n = size(); n <= maxResultBytes {
		return res, nil
	}
	over := fmt.Sprintf("this result is %.1f MiB as JSON (each <, > and & is six bytes), more than an MCP message may hold "+
		"(the official Go SDK reads at most 16 MiB)", float64(n)/(1<<20))
	if p, ok := out.(paged); ok {
		if items, next := p.page(); items == 1 {
			past := "it is the list's last item"
			if next != nil {
				past = fmt.Sprintf("to list the items after it, pass cursor %q", *next)
			}
			return nil, domain.Errorf(domain.TooLarge, "%s with this page's one item: read that item through the REST API, "+
				"with the same cursor, order and limit 1; %s", over, past)
		}
		return nil, domain.Errorf(domain.TooLarge, "%s; ask for fewer with limit, or read the page through the REST API", over)
	}
	return nil, domain.Errorf(domain.TooLarge, "%s; read it through the REST API", over)
}
