package domain

import (
	"context"
	"time"
)

// Usage counts the tokens of one completion.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
}

// Outcome says how a completion ended, for usage records and metrics.
type Outcome string

const (
	OutcomeOK               Outcome = "ok"
	OutcomeError            Outcome = "error"
	OutcomeUpstreamError    Outcome = "upstream_error"
	OutcomeClientDisconnect Outcome = "client_disconnect"
	OutcomeTruncated        Outcome = "truncated"
)

// UsageRecord is written for every completion, stateless or per chat.
type UsageRecord struct {
	ID             string // the completion's messageId
	ProjectID      string
	ChatID         string
	ConversationID string
	AIProviderID   string
	Model          string
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
)

// UsageQuery selects the usage of a project in [From, To).
type UsageQuery struct {
	ProjectID string
	From, To  time.Time
	GroupBy   UsageGroupBy // "" for one total
}

// UsageTotal sums the usage of one group.
type UsageTotal struct {
	Key      string // the model, provider id, chat id or key id; "" for ungrouped
	Usage    Usage
	Requests int64
}

// UsageStore keeps usage records.
type UsageStore interface {
	// InsertUsage stores records in one batch.
	InsertUsage(ctx context.Context, records []UsageRecord) error
	// SumUsage returns totals per group, ordered by key.
	SumUsage(ctx context.Context, q UsageQuery) ([]UsageTotal, error)
}
