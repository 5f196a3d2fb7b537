package domain

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Usage counts the tokens of one completion.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
}

// estimateUsage fills in the parts of u the provider did not report: some
// OpenAI-compatible servers send no usage in a stream, and a stream cut
// short has none yet. The prompt counts at four characters a token plus
// four a message (the overhead OpenAI documents); the reply at one token a
// delta received (OpenAI streams a token a delta) or four characters a
// token, whichever is more. A part the provider reported is kept, except
// that the reply of a partial completion (cut short) counts at least the
// estimate: a count the provider sent as the reply began (Anthropic's) is
// behind by then.
func estimateUsage(u Usage, partial bool, sent []LLMMessage, reply string, calls []ToolCall, deltas int) Usage {
	if u.PromptTokens == 0 {
		chars := 0
		for _, m := range sent {
			chars += len(m.Content)
			for _, c := range m.ToolCalls {
				chars += len(c.Name) + len(c.Arguments)
			}
		}
		u.PromptTokens = tokensOf(chars) + 4*len(sent)
	}
	if u.CompletionTokens == 0 || partial {
		chars := len(reply)
		for _, c := range calls {
			chars += len(c.Name) + len(c.Arguments)
		}
		u.CompletionTokens = max(u.CompletionTokens, deltas, tokensOf(chars))
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// tokensOf estimates the tokens of chars characters of text.
func tokensOf(chars int) int { return (chars + 3) / 4 }

// Outcome says how a completion ended, for usage records and metrics.
type Outcome string

const (
	OutcomeOK               Outcome = "ok"
	OutcomeError            Outcome = "error"
	OutcomeUpstreamError    Outcome = "upstream_error"
	OutcomeClientDisconnect Outcome = "client_disconnect"
	OutcomeTruncated        Outcome = "truncated"
	OutcomeInterrupted      Outcome = "interrupted" // ended by the server: shutdown or maximum stream duration
)

// UsageRecord is written for every completion, stateless or per chat.
type UsageRecord struct {
	ID             string // the completion's messageId
	ProjectID      string
	ChatID         string
	ConversationID string
	AIProviderID   string
	ProviderType   ProviderType // not stored; for metrics
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

// UsageBatcher records usage in batches from a background goroutine: a
// completion appends its record and goes on, without waking anyone; the
// goroutine writes what has gathered every interval, or as soon as a batch
// is full. Close flushes what is left.
type UsageBatcher struct {
	store    UsageStore
	log      *slog.Logger
	maxBatch int
	every    time.Duration

	mu      sync.Mutex
	pending []UsageRecord
	drained sync.Cond // signalled when pending was taken
	closed  bool
	kick    chan struct{} // capacity 1: a batch is full, or Close was called
	done    chan struct{}
}

// usageBacklog is how many batches may wait before Record blocks.
const usageBacklog = 16

// NewUsageBatcher starts a batcher that writes every interval or every
// maxBatch records, whichever comes first.
func NewUsageBatcher(store UsageStore, log *slog.Logger, maxBatch int, every time.Duration) *UsageBatcher {
	b := &UsageBatcher{store: store, log: log, maxBatch: maxBatch, every: every,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.drained.L = &b.mu
	go b.run()
	return b
}

// Record queues rec. When usageBacklog batches wait already it waits for
// the writer, so no record is lost; after Close it writes rec at once.
func (b *UsageBatcher) Record(ctx context.Context, rec UsageRecord) {
	b.mu.Lock()
	for !b.closed && len(b.pending) >= usageBacklog*b.maxBatch {
		b.drained.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		syncRecorder{store: b.store, log: b.log}.Record(ctx, rec)
		return
	}
	b.pending = append(b.pending, rec)
	full := len(b.pending) == b.maxBatch
	b.mu.Unlock()
	if full {
		b.wake()
	}
}

func (b *UsageBatcher) wake() {
	select {
	case b.kick <- struct{}{}:
	default: // already woken
	}
}

func (b *UsageBatcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.every)
	defer t.Stop()
	var batch []UsageRecord
	for {
		select {
		case <-b.kick:
		case <-t.C:
		}
		b.mu.Lock()
		batch, b.pending = b.pending, batch[:0]
		closed := b.closed
		b.drained.Broadcast()
		b.mu.Unlock()
		for rest := batch; len(rest) > 0; {
			n := min(len(rest), b.maxBatch)
			b.write(rest[:n])
			rest = rest[n:]
		}
		if closed {
			return
		}
	}
}

// write stores batch. One bad record (its project was deleted meanwhile)
// must not lose the others, so a failed batch is written again one by one.
func (b *UsageBatcher) write(batch []UsageRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := b.store.InsertUsage(ctx, batch)
	if err == nil || len(batch) == 1 {
		if err != nil {
			b.log.Warn("usage records lost", "records", 1, "err", err)
		}
		return
	}
	lost := 0
	for _, rec := range batch {
		if err := b.store.InsertUsage(ctx, []UsageRecord{rec}); err != nil {
			lost++
		}
	}
	if lost > 0 {
		b.log.Warn("usage records lost", "records", lost, "err", err)
	}
}

// Close returns once every queued record is written; later records are
// written one by one as they come.
func (b *UsageBatcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.drained.Broadcast()
	b.mu.Unlock()
	b.wake()
	<-b.done
}

// UsageReports answers usage queries.
type UsageReports struct {
	store  Store
	access access
	now    func() time.Time
}

// UsageInput is the input of UsageReports.Get. Zero From means 30 days
// before To; zero To means now.
type UsageInput struct {
	ProjectID string
	From, To  time.Time
	GroupBy   UsageGroupBy
}

// UsageReport is a project's usage totals and the period they cover.
type UsageReport struct {
	From, To time.Time // From inclusive, To exclusive, the defaults resolved
	Totals   []UsageTotal
}

// Get returns a project's usage totals over the period in asks for.
func (s *UsageReports) Get(ctx context.Context, in UsageInput) (UsageReport, error) {
	if err := s.access.checkProject(ctx, in.ProjectID, PermGetUsage); err != nil {
		return UsageReport{}, err
	}
	switch in.GroupBy {
	case "", GroupByModel, GroupByProvider, GroupByChat, GroupByKey:
	default:
		return UsageReport{}, Invalidf("groupBy", "groupBy must be one of model, provider, chat, key")
	}
	if in.To.IsZero() {
		in.To = s.now().Add(time.Second)
	}
	if in.From.IsZero() {
		in.From = in.To.Add(-30 * 24 * time.Hour)
	}
	if !in.From.Before(in.To) {
		return UsageReport{}, Invalidf("from", "from must be before to")
	}
	totals, err := s.store.SumUsage(ctx, UsageQuery(in))
	if err != nil {
		return UsageReport{}, Wrap("usage.Get", err)
	}
	return UsageReport{From: in.From, To: in.To, Totals: totals}, nil
}
