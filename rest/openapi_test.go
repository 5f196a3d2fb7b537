package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// The OpenAPI document is generated from this table and the request and
// response types themselves, so it cannot drift from the code:
// UPDATE_OPENAPI=1 go test ./rest -run OpenAPI rewrites openapi.json, and
// the test fails when the file is stale or a route is missing from it.

type apiRoute struct {
	method, path, summary string
	tag                   string
	request, response     any // nil for none
	status                int
	query                 []apiParam
	headers               []apiParam // request headers
	okHeaders             map[string]any
	stream                bool // the response may be text/event-stream
	public                bool // no bearer key
	// errors are the error statuses the route answers, with what each
	// means there, besides those errorsOf adds to every route of its
	// shape; a description here replaces errorsOf's for its status.
	// Reviewed against the handler and the domain method it calls (the
	// permission it checks, the kinds it returns); TestMain fails when a
	// test sees a route answer a status its operation does not list.
	errors errs
}

// errs maps error statuses to what each means for a route.
type errs map[int]string

type apiParam struct{ name, description string }

// Descriptions of statuses that several routes answer alike.
const (
	notMember      = "no such project, or one you are not a member of"
	projectFilter  = "projectId names a project that does not exist or that you are not a member of"
	staleUpdate    = "other requests changed it between each of several reads and writes; send the request again"
	otherUser      = "no such user, or another user than you (only admins see others)"
	ownersOnly     = "only the project's owners may do this; your role does not allow it"
	editorsOnly    = "viewers may not do this; it takes an editor or an owner"
	bodyTooLarge   = "body over PARLEY_MAX_BODY_BYTES"
	dbUnavailable  = "the database is unavailable or did not answer in time; retry later"
	contentTooLong = bodyTooLarge + ", or content over 4 MiB (error.details.field: content)"
)

// completionErrors are the statuses both completion routes answer.
func completionErrors() errs {
	return errs{
		400: "invalid request; error.details.field names the field, or error.details.upstreamStatus the status with which the AI provider refused it (400, 413 or 422), error.details.upstreamParam the parameter it refused and error.details.upstreamCode its error code (context_length_exceeded: longer than the model's context window), when it gave them",
		429: "a project or key limit, or the provider's; see Retry-After and RateLimit-* headers",
		502: "the AI provider failed, rejected its key or answered another 4xx",
		503: "the database is unavailable or did not answer in time, the provider's key cannot be resolved, or the server is shutting down",
		504: "the AI provider did not answer in time (a stream's first byte, or a whole reply)",
	}
}

// modelErrors are the errors of a model list, which asks the provider
// as a completion does.
func modelErrors() errs {
	return errs{
		400: "an unknown query parameter, or an azure-openai provider, whose completions name deployments, which Azure's OpenAI API does not list",
		429: "the AI provider is rate limiting its key; see Retry-After",
		502: "the AI provider failed, rejected its key, answered another 4xx (404: it lists no models, or its baseUrl is wrong), or sent no model list, or one past 10,000 models or 1 MiB of their names",
		503: completionErrors()[503],
		504: "the AI provider did not answer within the request timeout",
	}
}

// with returns e with the statuses of more added.
func (e errs) with(more errs) errs {
	for k, v := range more {
		e[k] = v
	}
	return e
}

var (
	pageParams = []apiParam{{"limit", "Page size, 1–100 (default 20, also when sent empty)."}, {"cursor", "The nextCursor of the previous page of this list, with the same filter (a cursor of another list is a 400); empty or left out, the first page."},
		{"order", "asc (the default, also when sent empty): in the order the items were created; desc: the most recently created first (a conversation continued later keeps its place). A cursor keeps the order of the page it came from (another order with it is a 400)."}}
	byProject = append([]apiParam{{"projectId", "Only this project's (404 if you cannot see it; 400 if sent empty: leave it out for every project's)."}}, pageParams...)
)

var apiRoutes = withOpenAIPaths([]apiRoute{
	{method: "GET", path: "/healthz", summary: "Liveness", tag: "operations", response: map[string]string{}, status: 200, public: true},
	{method: "GET", path: "/readyz", summary: "Readiness: the database answers", tag: "operations", response: map[string]string{}, status: 200, public: true, errors: errs{503: "the database does not answer"}},
	{method: "GET", path: "/openapi.json", summary: "This document", tag: "operations", response: map[string]any{}, status: 200, public: true},

	{method: "GET", path: "/api/v1/me", summary: "The calling user", tag: "users", response: userResponse{}, status: 200},
	{method: "GET", path: "/api/v1/users", summary: "List users (admins: all; others: themselves)", tag: "users", response: listResponse[userResponse]{}, status: 200, query: pageParams},
	{method: "POST", path: "/api/v1/users", summary: "Create a user (admin)", tag: "users", request: userCreateRequest{}, response: userResponse{}, status: 201, errors: errs{403: "only a system admin may create users"}},
	{method: "GET", path: "/api/v1/users/{userId}/api-keys", summary: "List a user's API keys (never the secret)", tag: "users", response: listResponse[apiKeyResponse]{}, status: 200, query: pageParams, errors: errs{404: otherUser}},
	{method: "POST", path: "/api/v1/users/{userId}/api-keys", summary: "Create an API key; the key is shown only in this response", tag: "users", request: apiKeyCreateRequest{}, response: createdAPIKeyResponse{}, status: 201, errors: errs{404: otherUser}},
	{method: "DELETE", path: "/api/v1/users/{userId}/api-keys/{keyId}", summary: "Revoke an API key; answers it as it stays listed, revokedAt set (again: the same, with the first revokedAt)", tag: "users", response: apiKeyResponse{}, status: 200, errors: errs{404: "no such key of that user, " + otherUser}},

	{method: "GET", path: "/api/v1/projects", summary: "List the projects you can see", tag: "projects", response: listResponse[projectResponse]{}, status: 200, query: pageParams},
	{method: "POST", path: "/api/v1/projects", summary: "Create a project; you become its owner", tag: "projects", request: projectCreateRequest{}, response: projectResponse{}, status: 201},
	{method: "GET", path: "/api/v1/projects/{projectId}", summary: "Get a project", tag: "projects", response: projectResponse{}, status: 200, errors: errs{404: notMember}},
	{method: "PATCH", path: "/api/v1/projects/{projectId}", summary: "Update a project (owner)", tag: "projects", request: projectUpdateRequest{}, response: projectResponse{}, status: 200, errors: errs{403: ownersOnly, 404: notMember, 409: staleUpdate}},
	{method: "DELETE", path: "/api/v1/projects/{projectId}", summary: "Delete a project and everything in it (owner)", tag: "projects", response: deletedResponse{}, status: 200, errors: errs{403: ownersOnly, 404: notMember}},
	{method: "GET", path: "/api/v1/projects/{projectId}/members", summary: "List members", tag: "projects", response: listResponse[memberResponse]{}, status: 200, query: pageParams, errors: errs{404: notMember}},
	{method: "PUT", path: "/api/v1/projects/{projectId}/members/{userId}", summary: "Give a user a role (owner)", tag: "projects", request: memberPutRequest{}, response: memberResponse{}, status: 200, errors: errs{403: ownersOnly, 404: notMember + "; or no such user", 409: "it would demote the project's last owner; make another member owner first"}},
	{method: "DELETE", path: "/api/v1/projects/{projectId}/members/{userId}", summary: "Remove a member (owner), or leave (any member, itself); the last owner stays", tag: "projects", response: deletedResponse{}, status: 200, errors: errs{403: ownersOnly, 404: notMember + "; or the user is not a member", 409: "the user is the project's last owner; make another member owner first"}},
	{method: "GET", path: "/api/v1/projects/{projectId}/usage", summary: "Token and request totals", tag: "projects", response: usageResponse{}, status: 200, query: []apiParam{
		{"from", "Start, inclusive, ISO 8601 time with a UTC offset, or date (midnight UTC); default: 30 days before to."}, {"to", "End, exclusive, ISO 8601 time with a UTC offset, or date (midnight UTC); default: a second from now."}, {"groupBy", "model, provider, chat, key, outcome (ok, upstream_error, client_disconnect, ...) or day (UTC); groups come ordered by key, byte by byte."},
		{"limit", "Groups per page, 1–100 (default 20)."}, {"cursor", "The nextCursor of the previous page, with the same groupBy, from and to (or without from and to: the cursor keeps the period)."}}, errors: errs{404: notMember}},
	{method: "GET", path: "/api/v1/projects/{projectId}/limits", summary: "Rate limits (0 means none)", tag: "projects", response: limitsResponse{}, status: 200, errors: errs{404: notMember}},
	{method: "PUT", path: "/api/v1/projects/{projectId}/limits", summary: "Set rate limits (owner)", tag: "projects", request: limitsPut{}, response: limitsResponse{}, status: 200, errors: errs{403: ownersOnly, 404: notMember}},

	{method: "GET", path: "/api/v1/ai-providers", summary: "List AI providers (never a key)", tag: "ai-providers", response: listResponse[providerResponse]{}, status: 200, query: byProject, errors: errs{404: projectFilter}},
	{method: "POST", path: "/api/v1/ai-providers", summary: "Add an AI provider (owner); apiKey is write-only", tag: "ai-providers", request: providerCreateRequest{}, response: providerResponse{}, status: 201, errors: errs{403: ownersOnly + "; or apiKeyRef, which only an admin may set", 404: projectFilter}},
	{method: "GET", path: "/api/v1/ai-providers/{providerId}", summary: "Get an AI provider", tag: "ai-providers", response: providerResponse{}, status: 200, errors: errs{404: "no such AI provider, or in a project you are not a member of"}},
	{method: "PATCH", path: "/api/v1/ai-providers/{providerId}", summary: "Update an AI provider (owner)", tag: "ai-providers", request: providerUpdateRequest{}, response: providerResponse{}, status: 200, errors: errs{403: ownersOnly + "; or apiKeyRef set, or the baseUrl of a provider that has one changed, which only an admin may do", 404: "no such AI provider, or in a project you are not a member of", 409: staleUpdate}},
	{method: "DELETE", path: "/api/v1/ai-providers/{providerId}", summary: "Delete an AI provider (owner; 409 while chats use it)", tag: "ai-providers", response: deletedResponse{}, status: 200, errors: errs{403: ownersOnly, 404: "no such AI provider, or in a project you are not a member of", 409: "chats use it; delete them, or point them at another provider, first"}},

	{method: "GET", path: "/api/v1/documents", summary: "List documents, without their content (bytes is its size; get a document for it)", tag: "documents", response: listResponse[documentSummaryResponse]{}, status: 200, query: byProject, errors: errs{404: projectFilter}},
	{method: "POST", path: "/api/v1/documents", summary: "Create a document (editor)", tag: "documents", request: documentCreateRequest{}, response: documentResponse{}, status: 201, errors: errs{403: editorsOnly, 404: projectFilter, 413: contentTooLong}},
	{method: "GET", path: "/api/v1/documents/{documentId}", summary: "Get a document", tag: "documents", response: documentResponse{}, status: 200, errors: errs{404: "no such document, or in a project you are not a member of"}},
	{method: "PATCH", path: "/api/v1/documents/{documentId}", summary: "Update a document (editor)", tag: "documents", request: documentUpdateRequest{}, response: documentResponse{}, status: 200, errors: errs{403: editorsOnly, 404: "no such document, or in a project you are not a member of", 409: staleUpdate, 413: contentTooLong}},
	{method: "DELETE", path: "/api/v1/documents/{documentId}", summary: "Delete a document (editor)", tag: "documents", response: deletedResponse{}, status: 200, errors: errs{403: editorsOnly, 404: "no such document, or in a project you are not a member of"}},

	{method: "GET", path: "/api/v1/chats", summary: "List chats (chats:ListChats)", tag: "chats", response: listResponse[chatResponse]{}, status: 200, query: byProject, errors: errs{404: projectFilter}},
	{method: "POST", path: "/api/v1/chats", summary: "Create a chat (chats:CreateChat)", tag: "chats", request: chatCreateRequest{}, response: chatResponse{}, status: 201, errors: errs{403: editorsOnly, 404: projectFilter}},
	{method: "GET", path: "/api/v1/chats/{chatId}", summary: "Get a chat (chats:GetChat)", tag: "chats", response: chatResponse{}, status: 200, errors: errs{404: "no such chat, or in a project you are not a member of"}},
	{method: "PATCH", path: "/api/v1/chats/{chatId}", summary: "Update a chat (chats:UpdateChat)", tag: "chats", request: chatUpdateRequest{}, response: chatResponse{}, status: 200, errors: errs{403: editorsOnly, 404: "no such chat, or in a project you are not a member of", 409: staleUpdate}},
	{method: "DELETE", path: "/api/v1/chats/{chatId}", summary: "Delete a chat and its conversations (chats:DeleteChat)", tag: "chats", response: deletedResponse{}, status: 200, errors: errs{403: editorsOnly, 404: "no such chat, or in a project you are not a member of"}},
	{method: "POST", path: "/api/v1/chats/completions", summary: "Stateless completion with the named provider (aiProviders:UseAIProvider)", tag: "chats", request: statelessCompletionRequest{}, response: completionResponse{}, status: 200, stream: true, errors: completionErrors().with(errs{
		403: "viewers may not use the project's AI providers (aiProviders:UseAIProvider); or the role may not read the provider (aiProviders:GetAIProvider), which debug: true shows, or the documents that documentId messages send (documents:GetDocument)",
		404: "no such AI provider, or in a project you are not a member of",
		413: bodyTooLarge + ", or messages over 8 MiB once their documents are resolved",
	})},
	{method: "POST", path: "/api/v1/chats/{chatId}/completions", summary: "Completion with a chat's configuration, stored as a conversation (chats:CreateChatCompletion)", tag: "chats", request: chatCompletionRequest{}, response: completionResponse{}, status: 200, stream: true,
		headers: []apiParam{{"Idempotency-Key", "Optional: a key of yours naming this request, 1–255 visible ASCII characters (a UUID). Sent again with the same request (the same fields, in either spelling), the request is answered with the turn stored for it " +
			"(Idempotent-Replayed: true), JSON or streamed as asked, without a call upstream or a second turn. Keys belong to the chat and last as long as the stored reply."}},
		okHeaders: map[string]any{"Idempotent-Replayed": map[string]any{"description": "true when the response is the turn stored earlier for the request's Idempotency-Key; absent otherwise.", "schema": map[string]any{"type": "string"}}},
		errors: completionErrors().with(errs{
			400: completionErrors()[400] + "; or an Idempotency-Key that is malformed, or was sent before with another request to this chat (error.details.field: idempotencyKey)",
			403: "viewers may not run completions (chats:CreateChatCompletion); or the role may not read what debug: true shows, the chat (chats:GetChat) and the conversation continued (conversations:GetConversation), or the documents that documentId messages send (documents:GetDocument)",
			404: "no such chat (or in a project you are not a member of), or conversationId names a conversation you cannot read or one of another chat (its chat in error.details.chatId when you can read it)",
			409: "another request is continuing the conversation, or starting it (its stream named it; nothing went upstream), or, on another instance, continued it meanwhile (nothing was stored); " +
				"or a request with the same Idempotency-Key is running (nothing went upstream), or on another instance stored its turn first (nothing was stored); send the request again once it has answered",
			413: bodyTooLarge + ", messages over 8 MiB once their documents are resolved, or a conversation over 32 MiB to continue (leave out conversationId)",
		})},
	{method: "GET", path: "/api/v1/models", summary: "List the models an AI provider offers, as it lists them now, in OpenAI's shape (aiProviders:UseAIProvider), at the path OpenAI's SDKs ask with the base URL …/api/v1", tag: "ai-providers",
		response: modelsResponse{}, status: 200, query: []apiParam{{"aiProviderId", "Required: the AI provider whose models to list."}}, errors: modelErrors().with(errs{
			400: modelErrors()[400] + "; or aiProviderId left out, empty or malformed",
			403: "viewers may not use the project's AI providers (aiProviders:UseAIProvider)",
			404: "no such AI provider, or in a project you are not a member of",
		})},
	{method: "GET", path: "/api/v1/models/{model}", summary: "Get one model of an AI provider's list, in OpenAI's shape (aiProviders:UseAIProvider), at the path OpenAI's SDKs retrieve it with the base URL …/api/v1; a name with a slash is taken whole or escaped (%2F)", tag: "ai-providers",
		response: modelResponse{}, status: 200, query: []apiParam{{"aiProviderId", "Required: the AI provider whose model to get."}}, errors: modelErrors().with(errs{
			400: modelErrors()[400] + "; or aiProviderId left out, empty or malformed",
			403: "viewers may not use the project's AI providers (aiProviders:UseAIProvider)",
			404: "no such AI provider, or in a project you are not a member of; or the provider lists no such model",
		})},
	{method: "GET", path: "/api/v1/chats/{chatId}/models/{model}", summary: "Get one model of a chat's AI provider's list, in OpenAI's shape (chats:CreateChatCompletion), at the path OpenAI's SDKs retrieve it with the base URL …/api/v1/chats/{chatId}; a name with a slash is taken whole or escaped (%2F)", tag: "chats",
		response: modelResponse{}, status: 200, errors: modelErrors().with(errs{
			400: modelErrors()[400] + "; or the chat id in the path is empty",
			403: "viewers may not run completions (chats:CreateChatCompletion)",
			404: "no such chat, or in a project you are not a member of; or its provider lists no such model",
		})},
	{method: "GET", path: "/api/v1/chats/{chatId}/models", summary: "List the models of a chat's AI provider, as it lists them now, in OpenAI's shape (chats:CreateChatCompletion), at the path OpenAI's SDKs ask with the base URL …/api/v1/chats/{chatId}", tag: "chats",
		response: modelsResponse{}, status: 200, errors: modelErrors().with(errs{
			400: modelErrors()[400] + "; or the chat id in the path is empty",
			403: "viewers may not run completions (chats:CreateChatCompletion)",
			404: "no such chat, or in a project you are not a member of",
		})},

	{method: "GET", path: "/api/v1/conversations", summary: "List conversations", tag: "conversations", response: listResponse[conversationResponse]{}, status: 200, query: append([]apiParam{{"chatId", "Only this chat's (404 if you cannot see it; 400 if sent empty: leave it out for every chat's)."},
		{"projectId", "Only this project's, of all its chats (404 if you cannot see it; 400 if sent empty, or with chatId)."}}, pageParams...),
		errors: errs{404: "chatId or projectId names a chat or project that does not exist or that you are not a member of"}},
	{method: "GET", path: "/api/v1/conversations/{conversationId}", summary: "Get a conversation with all its messages", tag: "conversations", response: conversationDetail{}, status: 200, errors: errs{404: "no such conversation, or in a project you are not a member of"}},
	{method: "GET", path: "/api/v1/conversations/{conversationId}/messages", summary: "List a conversation's messages in order, a page at a time", tag: "conversations", response: listResponse[messageResponse]{}, status: 200, query: pageParams, errors: errs{404: "no such conversation, or in a project you are not a member of"}},
	{method: "DELETE", path: "/api/v1/conversations/{conversationId}", summary: "Delete a conversation (editor)", tag: "conversations", response: deletedResponse{}, status: 200, errors: errs{403: editorsOnly, 404: "no such conversation, or in a project you are not a member of", 409: "its first reply is still being generated (a stream named it before its turn was stored); retry when it ends"}},
})

// withOpenAIPaths adds to routes the completion routes again at the paths
// OpenAI's SDKs post to, {baseURL}/chat/completions (openai.go).
func withOpenAIPaths(routes []apiRoute) []apiRoute {
	paths := map[string]struct{ path, baseURL string }{
		"/api/v1/chats/completions":          {"/api/v1/chat/completions", "…/api/v1"},
		"/api/v1/chats/{chatId}/completions": {"/api/v1/chats/{chatId}/chat/completions", "…/api/v1/chats/{chatId}"},
	}
	for _, rt := range routes {
		if p, ok := paths[rt.path]; ok {
			rt.summary = fmt.Sprintf("%s, at the path OpenAI's SDKs post to with the base URL %s", rt.summary, p.baseURL)
			rt.path = p.path
			routes = append(routes, rt)
		}
	}
	return routes
}

// mcpPaths are served beside the API (mounted by the app), described here
// for completeness. Each transport's guard answers 401 for a missing or
// wrong key, 503 when the database that checks it is down, 500 for a fault
// of ours, and 413 for a body over PARLEY_MAX_BODY_BYTES.
var mcpPaths = map[string]any{
	"/mcp": map[string]any{
		"post": map[string]any{"summary": "MCP streamable HTTP transport (JSON-RPC)", "tags": []string{"mcp"}, "responses": map[string]any{
			"202": map[string]any{"description": "accepted: a notification or a response, which has no answer"},
			"200": withHeaders(map[string]any{"description": "JSON-RPC response, as JSON or an SSE stream"}, map[string]any{
				"Mcp-Session-Id": map[string]any{"description": "The session's id, on the answer to initialize: send it with every later request.", "schema": map[string]any{"type": "string"}}}),
			"204": map[string]any{"description": "a request the client cancelled (notifications/cancelled) before its answer began, for a client that accepts only JSON: no body"},
			"400": jsonRPCErrRef("a request after initialize without Mcp-Session-Id, a Content-Type other than application/json, or an MCP-Protocol-Version " +
				"this server does not speak (a body that is not JSON gets JSON-RPC's parse error, -32700, instead; a JSON-RPC batch, or a request " +
				"whose id is not a string or an integer, JSON-RPC's invalid request, -32600, with id null)"),
			"401": errRef("no or wrong bearer key"), "403": errRef(originRefused),
			"404": errRef("no such session: Mcp-Session-Id is malformed; initialize again"),
			"413": errRef(bodyTooLarge), "500": errRef("internal error"), "503": errRef(dbUnavailable),
		}},
	},
	"/sse": map[string]any{"get": map[string]any{"summary": "MCP SSE transport: event stream", "tags": []string{"mcp"}, "responses": map[string]any{
		"200": map[string]any{"description": "text/event-stream, until the client closes it or its key is revoked or expires"}, "401": errRef("no or wrong bearer key"), "403": errRef(originRefused),
		"413": errRef(bodyTooLarge + " (a body this operation does not read)"),
		"429": withHeaders(errRef("the user holds PARLEY_MCP_SSE_SESSIONS_PER_USER sessions open already; close one"), map[string]any{
			"Retry-After": map[string]any{"description": "Seconds to wait before opening a session again (5).", "schema": map[string]any{"type": "integer"}}}),
		"500": errRef("internal error"), "503": errRef(dbUnavailable),
	}}},
	"/message": map[string]any{"post": map[string]any{"summary": "MCP SSE transport: client messages", "tags": []string{"mcp"}, "responses": map[string]any{
		"202": map[string]any{"description": "accepted"}, "400": jsonRPCErrRef("no sessionId; or a body that is not one JSON value (JSON-RPC's parse error, -32700), a JSON-RPC batch, or a request " +
			"whose id is not a string or an integer (JSON-RPC's invalid request, -32600), with id null"), "401": errRef("no or wrong bearer key"), "403": errRef(originRefused),
		"404": errRef("no such session of the caller's"), "413": errRef(bodyTooLarge),
		"429": withHeaders(errRef("the session has 64 requests awaiting their responses, the most one session may; wait for one, or open another session"), map[string]any{
			"Retry-After": map[string]any{"description": "Seconds to wait before sending again (1).", "schema": map[string]any{"type": "integer"}}}),
		"500": errRef("internal error"), "503": errRef(dbUnavailable),
	}}},
	"/metrics": map[string]any{"get": map[string]any{"summary": "Prometheus metrics", "tags": []string{"operations"}, "security": []any{}, "responses": map[string]any{"200": map[string]any{"description": "text/plain; version=0.0.4"},
		"413": errRef(bodyTooLarge + " (a body this operation does not read)"), "500": errRef("internal error")}}},
}

// rateLimitHeaders are the headers of a 429: Retry-After on every one,
// RateLimit-* (draft-ietf-httpapi-ratelimit-headers-06) on a refusal by
// one of Parley's own limits, not on a provider's.
func rateLimitHeaders() map[string]any {
	h := func(desc, typ string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": typ}}
	}
	return map[string]any{
		"Retry-After":         h("Seconds to wait before retrying.", "integer"),
		"RateLimit-Limit":     h("Parley's limits only: the limit reached (requests, tokens or open streams).", "integer"),
		"RateLimit-Remaining": h("Parley's limits only: what is left of it, 0.", "integer"),
		"RateLimit-Reset":     h("Parley's limits only: seconds until it resets (the end of the minute; 1 for open streams).", "integer"),
		"RateLimit-Policy": h(`Parley's limits only: the quota, its window in seconds for a per-minute limit, and the limit's name, `+
			`e.g. 600;w=60;comment="project-requests-per-minute" or 4;comment="key-concurrent-streams".`, "string"),
	}
}

// errorHeaders are the headers of a 401 (handleError's challenge, RFC
// 6750) and of a 502 (the OpenAI SDKs' header, which stops their own
// retries of what Parley has retried already).
var errorHeaders = map[string]any{
	"WWW-Authenticate": map[string]any{"description": `Bearer realm="parley", with error="invalid_token" for a key that is unknown, expired or revoked, and error="invalid_request" for several Authorization headers.`,
		"schema": map[string]any{"type": "string"}},
	"X-Should-Retry": map[string]any{"description": "false: Parley has retried what retrying mends; sending the request again would call the provider again.",
		"schema": map[string]any{"type": "string", "enum": []string{"false"}}},
}

// quotaHeaders are the headers of an admitted completion when limits of
// its project applied (setQuotaHeaders): RateLimit-* as on a 429, for the
// limit closest to running out, and every limit that applied.
func quotaHeaders() map[string]any {
	h := func(desc, typ string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"type": typ}}
	}
	return map[string]any{
		"RateLimit-Limit": h("When limits of the project applied: the one closest to running out, with the smallest share of its limit remaining "+
			"(requests or tokens per minute, or open streams).", "integer"),
		"RateLimit-Remaining": h("What is left of it: requests or open streams with this one counted; tokens before this completion's, "+
			"which count when it ends.", "integer"),
		"RateLimit-Reset": h("Seconds until it resets, from when the reply is sent (the end of the minute; 1 for open streams).", "integer"),
		"RateLimit-Policy": h(`Every limit that applied, that one first: its quota, its window in seconds for a per-minute limit, and its name, `+
			`e.g. 60;w=60;comment="key-requests-per-minute", 600;w=60;comment="project-requests-per-minute", 4;comment="key-concurrent-streams".`, "string"),
	}
}

// originRefused is MCP over HTTP's 403, on every endpoint.
const originRefused = "an Origin header that is neither a loopback origin nor one PARLEY_MCP_ALLOWED_ORIGINS lists"

// withHeaders adds headers to the response r.
func withHeaders(r map[string]any, headers map[string]any) map[string]any {
	r["headers"] = headers
	return r
}

// jsonRPCErrRef is errRef for MCP's transports, whose 400 is Parley's
// envelope or, for a body JSON-RPC itself refuses, a JSON-RPC error
// response (#/components/schemas/JSONRPCError).
func jsonRPCErrRef(desc string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"oneOf": []any{
		map[string]any{"$ref": "#/components/schemas/Error"}, map[string]any{"$ref": "#/components/schemas/JSONRPCError"}}}}}}
}

// jsonRPCErrorSchema is a JSON-RPC 2.0 error response.
func jsonRPCErrorSchema() map[string]any {
	return map[string]any{"type": "object", "required": []string{"jsonrpc", "id", "error"}, "properties": map[string]any{
		"jsonrpc": map[string]any{"const": "2.0"},
		"id":      map[string]any{"type": []string{"string", "integer", "null"}},
		"error": map[string]any{"type": "object", "required": []string{"code", "message"}, "properties": map[string]any{
			"code": map[string]any{"type": "integer"}, "message": map[string]any{"type": "string"}, "data": map[string]any{}}},
	}}
}

func errRef(desc string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
}

// schemaOf is the schema of v as a response: every field a handler always
// sends (no omitempty) is required, and one that may be null (a pointer
// without omitempty) says so.
func schemaOf(v any) any { return reflectSchema(v, true) }

// requestSchemaOf is the schema of v as a request body: the fields it
// requires are those tagged jsonschema:"required", and in the types REST
// shares with MCP (internal/wire) those without omitempty, as MCP's tool
// schemas read them. Every field it does not require may be null, which
// the decoder reads as left out (as OpenAI's clients send unset
// parameters), except at the top of a body that refuses nulls
// (nullsRefused: a PATCH's and the limits' PUT, where null would read as
// "keep" or "none" unasked).
func requestSchemaOf(v any, nullsRefused bool) any {
	s := reflectSchema(v, false).(map[string]any)
	nullsLeftOut(s, !nullsRefused)
	return s
}

// nullsLeftOut lets null stand for each property of the object schema s,
// and of the objects within it, that s does not require (at its own level
// only when top is true).
func nullsLeftOut(s map[string]any, top bool) {
	props, _ := s["properties"].(map[string]any)
	required, _ := s["required"].([]any)
	for name, v := range props {
		p := v.(map[string]any)
		nullsLeftOut(p, true)
		if top && !slices.Contains(required, any(name)) {
			orNull(p)
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		nullsLeftOut(items, true)
	}
	for _, alt := range objectsOf(s["anyOf"]) {
		nullsLeftOut(alt, true)
	}
}

// orNull adds null to the types the schema p allows.
func orNull(p map[string]any) {
	switch typ := p["type"].(type) {
	case string:
		if typ != "null" {
			p["type"] = []any{typ, "null"}
		}
		// An enum lists every value taken: null too.
		if enum, ok := p["enum"].([]string); ok {
			vals := make([]any, 0, len(enum)+1)
			for _, e := range enum {
				vals = append(vals, e)
			}
			p["enum"] = append(vals, nil)
		}
	case nil:
		alts := objectsOf(p["anyOf"])
		if alts != nil && !slices.ContainsFunc(alts, func(a map[string]any) bool { return a["type"] == "null" }) {
			p["anyOf"] = append(p["anyOf"].([]any), map[string]any{"type": "null"})
		}
	}
}

// objectsOf reads v, a decoded JSON array of objects, as its objects.
func objectsOf(v any) []map[string]any {
	a, _ := v.([]any)
	var out []map[string]any
	for _, e := range a {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func reflectSchema(v any, response bool) any {
	r := &jsonschema.Reflector{Anonymous: true, DoNotReference: true, RequiredFromJSONSchemaTags: !response, Mapper: mapType, LookupComment: descTag}
	s := r.Reflect(v)
	s.Version = ""
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	withTags(m, reflect.TypeOf(v), response)
	return m
}

// withTags adds to s, the schema of a value of type t, what the field tags
// that MCP's tool schemas read say and the reflector does not: min and max
// (minimum and maximum; minItems and maxItems of an array; minLength and
// maxLength, in characters, of a string), enum; in a
// request, the required fields of internal/wire's types; in a response,
// null for a pointer without omitempty.
func withTags(s map[string]any, t reflect.Type, response bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if items, ok := s["items"].(map[string]any); ok {
			withTags(items, t.Elem(), response)
		}
	case reflect.Struct:
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			return
		}
		// In field order: a field that takes the place of an embedded
		// struct's (REST's messages, a message's role) comes after it in
		// its struct, so its tags are the ones left.
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				withTags(s, f.Type, response)
				continue
			}
			p, ok := props[name].(map[string]any)
			if !ok {
				continue
			}
			withTags(p, f.Type, response)
			minKey, maxKey := "minimum", "maximum"
			switch p["type"] {
			case "array":
				minKey, maxKey = "minItems", "maxItems"
			case "string":
				minKey, maxKey = "minLength", "maxLength"
			}
			if v := f.Tag.Get("min"); v != "" {
				p[minKey] = json.Number(v)
			}
			if v := f.Tag.Get("max"); v != "" {
				p[maxKey] = json.Number(v)
			}
			if v := f.Tag.Get("enum"); v != "" {
				p["enum"] = strings.Split(v, ",")
			}
			if v := f.Tag.Get("pattern"); v != "" {
				p["pattern"] = v
			}
			omitted := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
			if response && f.Type.Kind() == reflect.Pointer && !omitted {
				if typ, ok := p["type"].(string); ok && typ != "null" {
					p["type"] = []any{typ, "null"}
				}
			}
			if !response && !omitted && t.PkgPath() == reflect.TypeFor[wire.Message]().PkgPath() {
				req, _ := s["required"].([]any)
				if !slices.Contains(req, any(name)) {
					s["required"] = append(req, name)
				}
			}
		}
	}
}

// descTag describes a field by its desc tag, the one the MCP tool schemas
// read, so that both documents say the same. A field without one that
// takes the place of an embedded struct's field (REST's messages) has
// that field's.
func descTag(t reflect.Type, field string) string {
	if field == "" || t.Kind() != reflect.Struct {
		return ""
	}
	f, _ := t.FieldByName(field)
	if d := f.Tag.Get("desc"); d != "" {
		return d
	}
	for i := range t.NumField() {
		if e := t.Field(i); e.Anonymous && e.Type.Kind() == reflect.Struct {
			if d := descTag(e.Type, field); d != "" {
				return d
			}
		}
	}
	return ""
}

// maxStop is how many stop sequences a completion takes; none is empty.
var maxStop, minStopLen uint64 = 4, 1

func mapType(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[wire.StopList]():
		return &jsonschema.Schema{Description: "A stop sequence or up to 4.", AnyOf: []*jsonschema.Schema{
			{Type: "string", MinLength: &minStopLen}, {Type: "array", Items: &jsonschema.Schema{Type: "string", MinLength: &minStopLen}, MaxItems: &maxStop},
		}}
	case reflect.TypeFor[wire.Content](), reflect.TypeFor[*wire.Content]():
		part := &jsonschema.Schema{Type: "object", Required: []string{"type", "text"}, Properties: jsonschema.NewProperties()}
		part.Properties.Set("type", &jsonschema.Schema{Type: "string", Enum: []any{"text"}})
		part.Properties.Set("text", &jsonschema.Schema{Type: "string"})
		// null, as left out: OpenAI's SDKs send back a reply that only
		// called tools with content null.
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Type: "string"}, {Type: "array", Items: part},
			{Type: "null", Description: "Only an assistant message with tool calls (or a refusal): as OpenAI's SDKs send back a reply that only called tools."}}}
	case reflect.TypeFor[wire.ToolChoice](), reflect.TypeFor[*wire.ToolChoice]():
		return &jsonschema.Schema{Description: "auto, none, required, or the function to call.", AnyOf: []*jsonschema.Schema{
			{Type: "string", Enum: []any{"auto", "none", "required"}},
			toolChoiceObject(),
		}}
	case reflect.TypeFor[wire.RawJSON]():
		return &jsonschema.Schema{Type: "object", Description: "A JSON Schema object."}
	case reflect.TypeFor[*struct{}](), reflect.TypeFor[struct{}]():
		return &jsonschema.Schema{Type: "null"}
	}
	return nil
}

// toolChoiceObject is the object form of toolChoice.
func toolChoiceObject() *jsonschema.Schema {
	fn := &jsonschema.Schema{Type: "object", Required: []string{"name"}, Properties: jsonschema.NewProperties()}
	fn.Properties.Set("name", &jsonschema.Schema{Type: "string", Pattern: domain.ToolNamePattern})
	obj := &jsonschema.Schema{Type: "object", Required: []string{"type", "function"}, Properties: jsonschema.NewProperties()}
	obj.Properties.Set("type", &jsonschema.Schema{Type: "string", Enum: []any{"function"}})
	obj.Properties.Set("function", fn)
	return obj
}

var pathParam = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// operationIDs name each operation for the clients generated from the
// document (their methods' names), by method and path; the completions'
// as the MCP tools that make them.
var operationIDs = map[string]string{
	"GET /healthz": "getLiveness", "GET /readyz": "getReadiness", "GET /openapi.json": "getOpenAPI", "GET /metrics": "getMetrics",
	"POST /mcp": "mcpStreamableHTTP", "GET /sse": "mcpSSEStream", "POST /message": "mcpSSEMessage",
	"GET /api/v1/me": "getMe", "GET /api/v1/users": "listUsers", "POST /api/v1/users": "createUser",
	"GET /api/v1/users/{userId}/api-keys": "listAPIKeys", "POST /api/v1/users/{userId}/api-keys": "createAPIKey",
	"DELETE /api/v1/users/{userId}/api-keys/{keyId}": "revokeAPIKey",
	"GET /api/v1/projects":                           "listProjects", "POST /api/v1/projects": "createProject", "GET /api/v1/projects/{projectId}": "getProject",
	"PATCH /api/v1/projects/{projectId}": "updateProject", "DELETE /api/v1/projects/{projectId}": "deleteProject",
	"GET /api/v1/projects/{projectId}/members": "listMembers", "PUT /api/v1/projects/{projectId}/members/{userId}": "putMember",
	"DELETE /api/v1/projects/{projectId}/members/{userId}": "deleteMember", "GET /api/v1/projects/{projectId}/usage": "getUsage",
	"GET /api/v1/projects/{projectId}/limits": "getLimits", "PUT /api/v1/projects/{projectId}/limits": "putLimits",
	"GET /api/v1/ai-providers": "listAIProviders", "POST /api/v1/ai-providers": "createAIProvider", "GET /api/v1/ai-providers/{providerId}": "getAIProvider",
	"PATCH /api/v1/ai-providers/{providerId}": "updateAIProvider", "DELETE /api/v1/ai-providers/{providerId}": "deleteAIProvider",
	"GET /api/v1/documents": "listDocuments", "POST /api/v1/documents": "createDocument", "GET /api/v1/documents/{documentId}": "getDocument",
	"PATCH /api/v1/documents/{documentId}": "updateDocument", "DELETE /api/v1/documents/{documentId}": "deleteDocument",
	"GET /api/v1/chats": "listChats", "POST /api/v1/chats": "createChat", "GET /api/v1/chats/{chatId}": "getChat",
	"PATCH /api/v1/chats/{chatId}": "updateChat", "DELETE /api/v1/chats/{chatId}": "deleteChat",
	"POST /api/v1/chats/completions": "createChatCompletion", "POST /api/v1/chats/{chatId}/completions": "createChatCompletionForChat",
	"POST /api/v1/chat/completions": "createChatCompletionAtOpenAIPath", "POST /api/v1/chats/{chatId}/chat/completions": "createChatCompletionForChatAtOpenAIPath",
	"GET /api/v1/models": "listModels", "GET /api/v1/chats/{chatId}/models": "listModelsForChat",
	"GET /api/v1/models/{model}": "getModel", "GET /api/v1/chats/{chatId}/models/{model}": "getModelForChat",
	"GET /api/v1/conversations": "listConversations", "GET /api/v1/conversations/{conversationId}": "getConversation",
	"GET /api/v1/conversations/{conversationId}/messages": "listConversationMessages",
	"DELETE /api/v1/conversations/{conversationId}":       "deleteConversation",
}

func buildOpenAPI() map[string]any {
	paths := map[string]any{}
	for p, v := range mcpPaths {
		paths[p] = v
		for method, op := range v.(map[string]any) {
			op.(map[string]any)["operationId"] = operationIDs[strings.ToUpper(method)+" "+p]
		}
	}
	for _, rt := range apiRoutes {
		op := map[string]any{"summary": rt.summary, "tags": []string{rt.tag}, "operationId": operationIDs[rt.method+" "+rt.path]}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.query {
			param := map[string]any{"name": q.name, "in": "query", "description": q.description, "schema": querySchema(q.name)}
			if q.name == "limit" || q.name == "cursor" || q.name == "order" {
				param["allowEmptyValue"] = true // limit= is the default; cursor= the first page; order= ascending
			}
			params = append(params, param)
		}
		for _, q := range rt.headers {
			params = append(params, map[string]any{"name": q.name, "in": "header", "description": q.description, "schema": headerSchema(q.name)})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": requestSchemaOf(rt.request, rt.method == http.MethodPatch || strings.HasSuffix(rt.path, "/limits"))}}}
		}
		content := map[string]any{"application/json": map[string]any{"schema": schemaOf(rt.response)}}
		desc := "OK"
		if rt.stream {
			content["text/event-stream"] = map[string]any{"schema": map[string]any{
				"description": "With stream: true, or with stream left out and an Accept of text/event-stream alone. Each event is `data: <chat.completion.chunk>` (#/components/schemas/ChatCompletionChunk); the first chunk also carries messageId (and conversationId per chat), the last before `data: [DONE]` carries usage (and debug). An error after the stream began is `data: {\"error\": {...}}` (#/components/schemas/Error) then `data: [DONE]`. After 15 s without an event (PARLEY_SSE_KEEPALIVE) comes an SSE comment, `: keep-alive`, which may open the stream before its first chunk.",
				"type":        "string",
			}}
			desc = "The OpenAI chat.completion object, or streamed (stream: true, or Accept: text/event-stream alone) an SSE stream of chat.completion.chunk events; chunk schema: #/components/schemas/ChatCompletionChunk"
		}
		ok := map[string]any{"description": desc, "content": content}
		if strings.HasSuffix(rt.path, "/completions") {
			h := quotaHeaders()
			for k, v := range rt.okHeaders {
				h[k] = v
			}
			ok["headers"] = h
		}
		responses := map[string]any{strconv.Itoa(rt.status): ok}
		for code, d := range errorsOf(rt) {
			r := errRef(d)
			// A completion that fails once its limits admitted it says
			// what is left, as a success does; a refusal before (401, 413)
			// does not, and a 429 has its own.
			if strings.HasSuffix(rt.path, "/completions") && code != "401" && code != "413" && code != "429" {
				r["headers"] = quotaHeaders()
			}
			// A per-chat completion says when to come back to a turn still
			// running under its Idempotency-Key (409) and to a database that
			// refused the last turn (503).
			if strings.HasPrefix(rt.path, "/api/v1/chats/{chatId}/") && strings.HasSuffix(rt.path, "/completions") && (code == "409" || code == "503") {
				r["headers"].(map[string]any)["Retry-After"] = map[string]any{
					"description": "Seconds to wait before sending the request again, where Parley knows it.", "schema": map[string]any{"type": "integer"}}
			}
			responses[code] = r
		}
		if r, ok := responses["429"].(map[string]any); ok {
			r["headers"] = rateLimitHeaders()
		}
		op["responses"] = responses
		if rt.public {
			op["security"] = []any{}
		}
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = op
	}
	// The headers of a 401 and a 502, on every route, MCP's too; and
	// X-Request-Id on every answer.
	for _, item := range paths {
		for _, op := range item.(map[string]any) {
			responses := op.(map[string]any)["responses"].(map[string]any)
			for _, r := range responses {
				r := r.(map[string]any)
				h, _ := r["headers"].(map[string]any)
				if h == nil {
					h = map[string]any{}
					r["headers"] = h
				}
				h["X-Request-Id"] = map[string]any{"$ref": "#/components/headers/X-Request-Id"}
			}
			for code, name := range map[string]string{"401": "WWW-Authenticate", "502": "X-Should-Retry"} {
				if r, ok := responses[code].(map[string]any); ok {
					h, _ := r["headers"].(map[string]any)
					if h == nil {
						h = map[string]any{}
						r["headers"] = h
					}
					h[name] = errorHeaders[name]
				}
			}
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Parley",
			"version":     "1",
			"description": "Chat completions with context, for AI agents and applications. JSON in camelCase; times are ISO 8601 UTC; lists return {data, nextCursor}.",
		},
		"servers":  []any{map[string]any{"url": "/", "description": "the server that serves this document (relative, so right for any PARLEY_ADDR or proxy)"}},
		"security": []any{map[string]any{"bearer": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "An API key: Authorization: Bearer pk_…"}},
			"headers": map[string]any{"X-Request-Id": map[string]any{
				"description": "The request's id, which the logs name: the X-Request-Id the request carried (1 to 128 printable ASCII characters without spaces), else one Parley made (req_…).",
				"schema":      map[string]any{"type": "string"},
			}},
			"schemas": map[string]any{
				"Error":               errorSchema(),
				"JSONRPCError":        jsonRPCErrorSchema(),
				"ChatCompletionChunk": schemaOf(chunk{}),
			},
		},
	}
}

// querySchema is the schema of the query parameter name.
func querySchema(name string) map[string]any {
	switch name {
	case "limit":
		return map[string]any{"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
	case "groupBy":
		return map[string]any{"type": "string", "enum": domain.UsageGroupings}
	case "order":
		return map[string]any{"type": "string", "enum": []string{"", domain.OrderAsc, domain.OrderDesc}, "default": domain.OrderAsc}
	}
	return map[string]any{"type": "string"}
}

// headerSchema is the schema of the request header name.
func headerSchema(name string) map[string]any {
	if name == "Idempotency-Key" {
		return map[string]any{"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}
	}
	return map[string]any{"type": "string"}
}

func errorSchema() any {
	s := schemaOf(errorBody{}).(map[string]any)
	detail := s["properties"].(map[string]any)["error"].(map[string]any)
	detail["properties"].(map[string]any)["code"].(map[string]any)["enum"] = []string{
		"invalid_request", "unauthenticated", "forbidden", "not_found", "conflict", "payload_too_large",
		"rate_limited", "upstream_error", "upstream_timeout", "unavailable", "internal", "method_not_allowed",
	}
	return s
}

// errorsOf returns the error statuses rt answers: its own (rt.errors),
// and those every route of its shape answers alike, from the middleware
// and helpers they share:
//   - every route: 500, a fault of ours (a panic is recovered as one),
//     and 413 from limitBody, which refuses a body over the limit on
//     every route, even one that reads none (a GET's);
//   - every API route: 401 from authenticate, and 503 when the database
//     that checks the key (and serves the request) is down or does not
//     answer within PARLEY_REQUEST_TIMEOUT;
//   - a route with a body: 400 from bind's strict decoding (and the
//     domain's validation);
//   - a route with query parameters: 400 from page or knownQuery (a bad
//     limit or cursor, an unknown or repeated parameter), and every other
//     API route: 400 from noQuery (it takes none);
//   - a route with a parameter before its last segment: 400 when that
//     parameter is empty (the router matches /users//api-keys, and
//     lookup refuses the empty id). One in the last segment cannot be
//     empty: /chats/ matches no route.
//
// 405 is left out: it is the answer to a method a path does not have.
func errorsOf(rt apiRoute) map[string]string {
	out := map[int]string{500: "internal error", 413: bodyTooLarge + " (a body this operation does not read)"}
	if !rt.public {
		out[401] = "no, unknown, expired or revoked API key"
		out[503] = dbUnavailable
		out[400] = "a query parameter: this operation takes none"
		if i := strings.Index(rt.path, "{"); i >= 0 && strings.Contains(rt.path[i:], "}/") {
			out[400] = "an id in the path is empty, or a query parameter: this operation takes none"
		}
	}
	if rt.request != nil || rt.query != nil {
		out[400] = "invalid request; error.details.field names the field"
	}
	if rt.request != nil {
		out[413] = bodyTooLarge
	}
	for code, d := range rt.errors {
		out[code] = d
	}
	m := make(map[string]string, len(out))
	for code, d := range out {
		m[strconv.Itoa(code)] = d
	}
	return m
}

func TestOpenAPI(t *testing.T) {
	doc := buildOpenAPI()
	want, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("UPDATE_OPENAPI") == "1" {
		if err := os.WriteFile("openapi.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skip("rewrote openapi.json; it is embedded, so run the tests again")
	}
	if !bytes.Equal(openAPI, want) {
		t.Fatal("openapi.json is stale: run UPDATE_OPENAPI=1 go test ./rest -run OpenAPI")
	}

	// Every route the server has is in the document, with its method.
	s := New(nil, Config{})
	paths := doc["paths"].(map[string]any)
	var missing []string
	for _, r := range s.echo.Router().Routes() {
		// HEAD goes with every GET (see get) and is not listed apart.
		if !strings.HasPrefix(r.Path, "/api/v1/") || strings.HasSuffix(r.Path, "*") || r.Method == http.MethodHead {
			continue
		}
		p := regexp.MustCompile(`:([A-Za-z]+)`).ReplaceAllString(r.Path, "{$1}")
		item, _ := paths[p].(map[string]any)
		if _, ok := item[strings.ToLower(r.Method)]; !ok {
			missing = append(missing, r.Method+" "+p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("routes missing from the OpenAPI document: %v", missing)
	}
	// Every operation has an id of its own.
	ids := map[string]string{}
	for p, item := range paths {
		for method, op := range item.(map[string]any) {
			id, _ := op.(map[string]any)["operationId"].(string)
			if where, taken := ids[id]; id == "" || taken {
				t.Errorf("%s %s: operationId %q (also %s); want one of its own in operationIDs", method, p, id, where)
			}
			ids[id] = method + " " + p
		}
	}
	// Every $ref resolves.
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"#/components/schemas/([A-Za-z]+)"`).FindAllStringSubmatch(string(want), -1) {
		if _, ok := doc["components"].(map[string]any)["schemas"].(map[string]any)[ref[1]]; !ok {
			t.Errorf("$ref to a missing schema %s", ref[1])
		}
	}
}

// TestOpenAISpellingsTagsFollowParleys: a field in OpenAI's spelling takes
// what the same field in Parley's does.
func TestOpenAISpellingsTagsFollowParleys(t *testing.T) {
	theirs, _ := reflect.TypeFor[openAIFields]().FieldByName("ReasoningEffort")
	ours, _ := reflect.TypeFor[wire.CompletionFields]().FieldByName("ReasoningEffort")
	if got, want := theirs.Tag.Get("enum"), ours.Tag.Get("enum"); got != want || want == "" {
		t.Errorf("reasoning_effort's enum tag = %q, want reasoningEffort's %q", got, want)
	}
}
