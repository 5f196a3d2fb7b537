package domain

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"
)

// Every completion's usage, what it is and how it is recorded, in three
// files: this one holds the record, its estimate, the groupings a report
// may ask for and the store's port; usage_batcher.go writes records in
// batches off the hot path; usage_report.go sums them for
// GET /projects/{id}/usage and the get-usage tool.

// Usage counts the tokens of one completion.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// Estimated is set when Parley estimated a count, in whole or in part,
	// because the provider gave none (see estimateUsage).
	Estimated bool
	// CachedTokens are the prompt's tokens the provider read from its
	// prompt cache (OpenAI's prompt_tokens_details.cached_tokens,
	// Anthropic's cache_read_input_tokens), which it bills at a discount;
	// CacheWriteTokens those it wrote to the cache (Anthropic's
	// cache_creation_input_tokens), which it bills at a premium;
	// ReasoningTokens the reply's a reasoning model spent thinking
	// (completion_tokens_details.reasoning_tokens). 0 when the provider
	// reports none. All are parts of the totals above, never estimated.
	CachedTokens     int
	CacheWriteTokens int
	ReasoningTokens  int
}

// estimateUsage fills in the parts of u the provider did not report: some
// OpenAI-compatible servers send no usage in a stream, and a stream cut
// short has none yet. The prompt counts at four characters a token plus
// four a message (the overhead OpenAI documents); the reply at one token a
// delta received (OpenAI streams a token a delta) or four characters a
// token, whichever is more. A part the provider reported is kept, except
// that the reply of a partial completion (cut short) counts at least the
// estimate: a count the provider sent as the reply began (Anthropic's) is
// behind by then. A count replaced marks the usage Estimated.
func estimateUsage(u Usage, partial bool, sent []LLMMessage, reply string, calls []ToolCall, deltas int) Usage {
	if u.PromptTokens == 0 {
		chars := 0
		for _, m := range sent {
			chars += charsOf(m.Content+m.Refusal, m.ToolCalls)
		}
		u.PromptTokens = tokensOf(chars) + 4*len(sent)
		u.Estimated = true
	}
	if u.CompletionTokens == 0 || partial {
		if est := max(deltas, tokensOf(charsOf(reply, calls))); est > u.CompletionTokens {
			u.CompletionTokens = est
			u.Estimated = true
		}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// charsOf counts the characters of a message's text and tool calls:
// runes, not bytes, which would count a character beyond ASCII two to
// four times.
func charsOf(text string, calls []ToolCall) int {
	n := utf8.RuneCountInString(text)
	for _, c := range calls {
		n += utf8.RuneCountInString(c.Name) + utf8.RuneCountInString(c.Arguments)
	}
	return n
}

// tokensOf estimates the tokens of chars characters of text.
func tokensOf(chars int) int { return (chars + 3) / 4 }

// Outcome says how a completion ended, for usage records and metrics.
type Outcome string

const (
	OutcomeOK            Outcome = "ok"
	OutcomeError         Outcome = "error"
	OutcomeUpstreamError Outcome = "upstream_error"
	// OutcomeUpstreamRefused is a request the provider refused as
	// malformed (the caller's 400, ErrUpstreamRefused): the caller's to
	// fix, counted apart from the provider's failures so that an alert on
	// upstream_error is one on the provider.
	OutcomeUpstreamRefused  Outcome = "upstream_refused"
	OutcomeClientDisconnect Outcome = "client_disconnect"
	OutcomeTruncated        Outcome = "truncated"
	OutcomeInterrupted      Outcome = "interrupted" // ended by the server: shutdown or maximum stream duration
	// OutcomeNotStored is a reply the provider gave (and may bill) whose
	// turn Parley could not store: the client got an error instead.
	OutcomeNotStored Outcome = "not_stored"
)

// UsageRecord is written for every completion, stateless or per chat.
type UsageRecord struct {
	ID             string // the completion's messageId
	ProjectID      string
	ChatID         string
	ConversationID string
	AIProviderID   string
	ProviderType   ProviderType // not stored; for metrics
	Model          string       // the model that answered, as the provider named it; else the one asked for
	RequestedModel string       // not stored; for metrics: the model asked for
	UserID         string
	KeyID          string
	Usage          Usage
	Latency        time.Duration
	TimeToFirst    time.Duration
	Outcome        Outcome
	Stream         bool
	CreatedAt      time.Time
}

// UsageGroupBy names the dimension usage totals are grouped by.
type UsageGroupBy string

const (
	GroupByModel    UsageGroupBy = "model"
	GroupByProvider UsageGroupBy = "provider"
	GroupByChat     UsageGroupBy = "chat"
	GroupByKey      UsageGroupBy = "key"
	// GroupByOutcome splits the totals by how the completions ended: ok,
	// upstream_error, client_disconnect, interrupted...
	GroupByOutcome UsageGroupBy = "outcome"
	// GroupByDay splits the totals by the UTC day the completions were
	// recorded on, its key YYYY-MM-DD: a usage graph, or a bill by day.
	GroupByDay UsageGroupBy = "day"
)

// UsageGroupings are the groupings usage totals may be asked for.
var UsageGroupings = []UsageGroupBy{GroupByModel, GroupByProvider, GroupByChat, GroupByKey, GroupByOutcome, GroupByDay}

// ErrUnknownGrouping is the answer to a grouping not in UsageGroupings.
func ErrUnknownGrouping() *Error {
	names := make([]string, len(UsageGroupings))
	for i, g := range UsageGroupings {
		names[i] = string(g)
	}
	return Invalidf("groupBy", "groupBy must be one of %s", strings.Join(names, ", "))
}

// UsageQuery selects the usage of a project in [From, To).
type UsageQuery struct {
	ProjectID string
	From, To  time.Time
	GroupBy   UsageGroupBy // "" for one total
	// After, when set, keeps the groups whose key sorts after *After,
	// byte by byte; "" is a key, that of the group without one.
	After *string
	Limit int // at most this many groups; 0 for all
	// Names asks for the current name of each provider or chat grouped
	// by (UsageTotal.Name); ignored for the other groupings.
	Names bool
}

// UsageTotal sums the usage of one group.
type UsageTotal struct {
	Key string // the model, provider id, chat id or key id; "" for ungrouped
	// Name is the provider's or chat's name when asked for (UsageQuery.Names);
	// "" when the key names none, or one deleted since.
	Name     string
	Usage    Usage // Usage.Estimated is unused: see EstimatedTokens
	Requests int64
	// EstimatedTokens is the part of Usage.TotalTokens counted by
	// completions whose usage Parley estimated, in whole or in part.
	EstimatedTokens int64
}

// UsageStore keeps usage records.
type UsageStore interface {
	// InsertUsage stores records in one batch; Conflict when one's id
	// exists, NotFound when one's project does not, Invalid when the
	// database refuses a value (the batcher's refused tells these apart).
	InsertUsage(ctx context.Context, records []UsageRecord) error
	// SumUsage returns totals per group, ordered by key byte by byte
	// (q.After and q.Limit select a page of them); Invalid for an unknown
	// grouping.
	SumUsage(ctx context.Context, q UsageQuery) ([]UsageTotal, error)
}

// UsageRecorder takes usage records off the hot path. Record must not block
// for long; it never fails the completion that produced the record.
type UsageRecorder interface {
	Record(ctx context.Context, r UsageRecord)
}

// syncRecorder writes each record as it comes; tests and tools use it.
type syncRecorder struct {
	store UsageStore
	log   *slog.Logger
}

func (r syncRecorder) Record(ctx context.Context, rec UsageRecord) {
	if err := r.store.InsertUsage(context.WithoutCancel(ctx), []UsageRecord{rec}); err != nil {
		r.log.Error("usage record lost", "id", rec.ID, "err", err)
	}
}
