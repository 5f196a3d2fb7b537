// Package domain is Parley's core: the resources (users, projects,
// members, AI providers, documents, chats, conversations, usage), the
// services that create, read and change them with their validation and
// permissions (Services, built by NewServices), and completions, stateless
// or per chat, with their limits, retries, streaming and the turn they
// store. It imports only the standard library: the database, the
// permission policy, the rate limiter, the key sealer and the AI providers
// are ports (Store, Authorizer, Limiter, Sealer, LLM) that the adapters
// implement, and REST and MCP call the services alike (DESIGN.md).
package domain

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Store is every store port; the store package implements all of them on
// one database.
type Store interface {
	LimitStore
	UserStore
	ProjectStore
	MemberStore
	ProviderStore
	DocumentStore
	ChatStore
	ConversationStore
	UsageStore
}

// freshKey marks a context whose reads want the database's row (see
// WithFreshReads).
type freshKey struct{}

// WithFreshReads returns ctx marked so that a Store that caches rows (an
// instance's storecache) reads the chat or provider from the database:
// what a client GETs after its own write, which another instance may have
// made, must show it. Completions' and access checks' reads stay cached.
func WithFreshReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshKey{}, true)
}

// FreshReads reports whether ctx was marked by WithFreshReads.
func FreshReads(ctx context.Context) bool {
	fresh, _ := ctx.Value(freshKey{}).(bool)
	return fresh
}

// The server's defaults, for every package that falls back to one when it
// is given none (0) and for the environment variables that set them
// (cmd/parley).
const (
	// DefaultRequestTimeout bounds a REST request and an MCP tool call,
	// a completion's lookups before its upstream call but not that call,
	// and the wait for a request's body (PARLEY_REQUEST_TIMEOUT).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxBodyBytes caps a request's body, REST's and MCP's, and an
	// MCP stdio message (PARLEY_MAX_BODY_BYTES).
	DefaultMaxBodyBytes = 8 << 20
	// DefaultKeepAlive is how long an SSE stream, REST's or MCP's, may be
	// quiet before a comment keeps it alive (PARLEY_SSE_KEEPALIVE).
	DefaultKeepAlive = 15 * time.Second
)

// Deps are what the services need from the outside; internal/app wires them.
type Deps struct {
	Store  Store
	Authz  Authorizer
	Sealer Sealer
	LLM    LLM
	// Usage records completions off the hot path; nil writes synchronously.
	Usage UsageRecorder
	// Limiter enforces project limits; nil enforces none.
	Limiter Limiter
	// LimitsCacheTTL is how long a project's limits are cached; writes on
	// this instance invalidate at once. 0 means 5s.
	LimitsCacheTTL time.Duration
	// LookupEnv resolves apiKeyRef "env:NAME"; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Resolver resolves provider base URL hosts for the SSRF check; nil
	// means net.DefaultResolver.
	Resolver Resolver
	// AllowPrivateUpstreams lets providers point at loopback and private
	// addresses (PARLEY_ALLOW_PRIVATE_UPSTREAMS).
	AllowPrivateUpstreams bool
	// MaxStreamDuration ends a streamed completion that runs longer, over
	// REST and MCP alike (PARLEY_MAX_STREAM_DURATION); 0 means no limit.
	MaxStreamDuration time.Duration
	// RequestTimeout bounds a completion's lookups and admission before
	// its upstream call (PARLEY_REQUEST_TIMEOUT, as for other requests);
	// 0 means 30s.
	RequestTimeout time.Duration
	// UsageRetention is how long usage records are kept
	// (PARLEY_USAGE_RETENTION), which a usage report says when its period
	// starts earlier; 0 keeps them all.
	UsageRetention time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Services are the domain's use cases, one per module. REST handlers and
// MCP tools call the same methods with the same input structs.
type Services struct {
	Users         *Users
	Projects      *Projects
	Providers     *Providers
	Documents     *Documents
	Chats         *Chats
	Conversations *Conversations
	Completions   *Completions
	UsageReports  *UsageReports
	Limits        *Limits
}

// NewServices builds the services over deps.
func NewServices(d Deps) *Services {
	if d.LookupEnv == nil {
		d.LookupEnv = os.LookupEnv
	}
	if d.Resolver == nil {
		d.Resolver = defaultResolver
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = func() time.Time { return time.Now().UTC() }
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = DefaultRequestTimeout
	}
	if d.LimitsCacheTTL <= 0 {
		d.LimitsCacheTTL = 5 * time.Second
	}
	if d.Usage == nil {
		d.Usage = syncRecorder{store: d.Store, log: d.Logger}
	}
	acc := access{authz: d.Authz, members: d.Store, projects: d.Store}
	s := &Services{
		Users:         &Users{store: d.Store, now: d.Now},
		Projects:      &Projects{store: d.Store, access: acc, now: d.Now},
		Providers:     &Providers{deps: d, access: acc},
		Documents:     &Documents{store: d.Store, access: acc, now: d.Now},
		Conversations: &Conversations{store: d.Store, access: acc},
		UsageReports:  &UsageReports{store: d.Store, access: acc, now: d.Now, retention: d.UsageRetention},
	}
	s.Chats = &Chats{store: d.Store, access: acc, now: d.Now}
	s.Limits = &Limits{store: d.Store, access: acc, now: d.Now, ttl: d.LimitsCacheTTL}
	s.Completions = &Completions{deps: d, access: acc, providers: s.Providers, limits: s.Limits}
	s.Conversations.completions = s.Completions
	s.Chats.completions, s.Projects.completions = s.Completions, s.Completions
	return s
}

// Field limits shared by the modules.
const (
	maxNameLen  = 200
	maxModelLen = 200
	maxTextLen  = 1 << 20 // system messages, descriptions
)

// emptyWhenSent refuses an update's field sent as "" that must not be
// empty, saying that leaving it out keeps it: the whole entity's check
// would say it is "missing or empty", and tell the caller who sent it to
// send it.
func emptyWhenSent(field string, v *string, whose string) error {
	if v != nil && *v == "" {
		return Invalidf(field, "%s, when sent, must not be empty; leave it out to keep the %s's", field, whose)
	}
	return nil
}

// checkText validates a string field: not blank when required, at most
// max characters, valid UTF-8. A required field that is empty is missing;
// one of only whitespace is blank, and the message says which.
func checkText(field, v string, required bool, max int) error {
	if required && v == "" {
		// A JSON "" and no field at all decode alike: say both, or a
		// caller who sent "" is told to send what it sent.
		return Invalidf(field, "%s is required: it is missing or empty", field)
	}
	if required && strings.TrimSpace(v) == "" {
		return Invalidf(field, "%s must not be blank: it has only whitespace", field)
	}
	if !utf8.ValidString(v) {
		return Invalidf(field, "%s must be valid UTF-8", field)
	}
	if strings.IndexByte(v, 0) >= 0 {
		// PostgreSQL cannot store it in text; refused on SQLite too, so
		// that both databases take the same input.
		return Invalidf(field, "%s must not contain the NUL character (U+0000)", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return Invalidf(field, "%s is %d characters long; the limit is %d", field, n, max)
	}
	return nil
}

// checkName checks a resource's name as checkText does, and refuses a
// control character in it (a line break, ESC): a name is one line, shown
// in lists, UIs and a terminal, where ESC starts an escape sequence.
func checkName(field, v string, required bool) error {
	if err := checkText(field, v, required, maxNameLen); err != nil {
		return err
	}
	if i := strings.IndexFunc(v, notInName); i >= 0 {
		return Invalidf(field, "%s must not contain a control character such as a line break, a tab, ESC or a right-to-left override (one is at character %d)",
			field, utf8.RuneCountInString(v[:i])+1)
	}
	return nil
}

// notInName reports whether a name may not hold r: a control character,
// Unicode's line and paragraph separators (line breaks too), or a
// bidirectional embedding, override or isolate, which reorders how the
// text around it is shown. Other format characters stay: the zero-width
// joiner holds emoji sequences together.
func notInName(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		'\u202A' <= r && r <= '\u202E' || '\u2066' <= r && r <= '\u2069'
}

// checkUpdatedName is checkName for an update's name, which was is the
// stored one (nil on create): a name stored before names took no control
// character is kept, so that an update of the resource's other fields is
// not refused for it; one sent new is checked whole.
func checkUpdatedName(field, v string, required bool, was *string) error {
	if was != nil && *was == v {
		return checkText(field, v, required, maxNameLen)
	}
	return checkName(field, v, required)
}

// checkProse checks a description as checkText does, and refuses a
// control character in it other than a tab or a line break: it is shown
// as text, in UIs and a terminal, where ESC starts an escape sequence.
func checkProse(field, v string, max int) error {
	if err := checkText(field, v, false, max); err != nil {
		return err
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' }); i >= 0 {
		return Invalidf(field, "%s must not contain a control character other than a tab or a line break, such as ESC (one is at character %d)",
			field, utf8.RuneCountInString(v[:i])+1)
	}
	return nil
}

// checkModel checks a model name as checkText does, and refuses a control
// or invisible formatting character in it (a tab, a line break, U+200B):
// no provider's model has one, and the name goes as it is into usage
// reports' groups and the metrics' labels.
func checkModel(field, v string, required bool) error {
	if err := checkText(field, v, required, maxModelLen); err != nil {
		return err
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }); i >= 0 {
		return Invalidf(field, "%s must not contain a control or invisible formatting character (one is at character %d); send the model's name alone",
			field, utf8.RuneCountInString(v[:i])+1)
	}
	return nil
}

// trimRequired trims the whitespace around a required text, but leaves
// one of only whitespace as it is, so that checkText calls it blank rather
// than missing.
func trimRequired(v string) string {
	if t := strings.TrimSpace(v); t != "" {
		return t
	}
	return v
}

// checkRef validates a reference to another resource by public id.
func checkRef(field, prefix, v string) error {
	if v == "" {
		return Invalidf(field, "%s is required", field)
	}
	if !strings.HasPrefix(v, prefix) {
		return Invalidf(field, "%s must be an id starting with %q%s", field, prefix, otherKind(idKinds[prefix], prefix, v))
	}
	return nil
}

// lookup fetches a resource by id with get: an empty id is Invalid, and a
// malformed one NotFound without a query.
func lookup[T any](ctx context.Context, prefix, what, id string, get func(context.Context, string) (*T, error)) (*T, error) {
	if id == "" {
		return nil, emptyID(what, prefix)
	}
	if !validID(prefix, id) {
		return nil, notFoundID(what, prefix, id)
	}
	return get(ctx, id)
}

// notFoundID is NotFoundf for an id that cannot name a what (prefix), plus
// otherKind's hint.
func notFoundID(what, prefix, id string) *Error {
	return Errorf(NotFound, "%s %s does not exist%s", what, id, otherKind(what, prefix, id))
}

// otherKind says, when id is the id of another kind of resource than a
// what (prefix), which kind it is: ": that is a document id; pass a chat id
// (cht_…)"; when it has no id's prefix at all (a name, which an agent
// sends for the id it has not looked up), that it is no id; else it is "".
// An agent holding several ids (a completion's messageId and
// conversationId) easily sends the wrong one. The hint reads only the id,
// so it tells nothing of what exists.
func otherKind(what, prefix, id string) string {
	for _, p := range idPrefixes {
		if p != prefix && validID(p, id) {
			return fmt.Sprintf(": that is %s id; pass %s id (%s…)", withArticle(idKinds[p]), withArticle(what), prefix)
		}
	}
	// An id copied with its quotes or spaces, or upper-cased.
	norm := strings.ToLower(strings.Trim(id, " \t\r\n\"'"))
	if norm != id && validID(prefix, norm) {
		return fmt.Sprintf(": ids are lower case, without spaces or quotes; pass %s", norm)
	}
	for _, p := range idPrefixes {
		if strings.HasPrefix(norm, p) {
			return ""
		}
	}
	return fmt.Sprintf(": that is not an id; pass %s id (%s…)", withArticle(what), prefix)
}

// idKinds names the resource of each id prefix, as messages name it.
var idKinds = map[string]string{
	PrefixProject: "project", PrefixProvider: "AI provider", PrefixChat: "chat", PrefixDocument: "document",
	PrefixConversation: "conversation", PrefixMessage: "message", PrefixUser: "user", PrefixKey: "API key",
}

// withArticle puts "a" or "an" before name, as it sounds: "an AI
// provider", "a user" (no name idKinds has starts with a vowel sound
// spelt u).
func withArticle(name string) string {
	if strings.ContainsRune("AEIOaeio", rune(name[0])) {
		return "an " + name
	}
	return "a " + name
}

// emptyID is the answer to an empty id (a path such as
// /projects//limits): Invalid whoever asks, before any access check, which
// would answer a caller without a role that "project  does not exist".
func emptyID(what, prefix string) error {
	return Errorf(Invalid, "the %s id is empty; pass the id of %s (%s…)", what, withArticle(what), prefix)
}

// unchanged reports whether an update left a resource as it was fetched.
// Updates then write nothing and keep updatedAt, so that a PATCH with
// nothing new (an empty body, or the values the resource already has)
// does not look like a change to a client that syncs by updatedAt.
func unchanged[T any](before T, after *T) bool {
	return reflect.DeepEqual(before, *after)
}
