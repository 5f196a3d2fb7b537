package domain

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Usage counts the tokens of one completion.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// Estimated is set when Parley estimated a count, in whole or in part,
	// because the provider gave none (see estimateUsage).
	Estimated bool
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
	OutcomeOK               Outcome = "ok"
	OutcomeError            Outcome = "error"
	OutcomeUpstreamError    Outcome = "upstream_error"
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
	// GroupByOutcome splits the totals by how the completions ended: ok,
	// upstream_error, client_disconnect, interrupted...
	GroupByOutcome UsageGroupBy = "outcome"
)

// UsageGroupings are the groupings usage totals may be asked for.
var UsageGroupings = []UsageGroupBy{GroupByModel, GroupByProvider, GroupByChat, GroupByKey, GroupByOutcome}

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
}

// UsageTotal sums the usage of one group.
type UsageTotal struct {
	Key      string // the model, provider id, chat id or key id; "" for ungrouped
	Usage    Usage  // Usage.Estimated is unused: see EstimatedTokens
	Requests int64
	// EstimatedTokens is the part of Usage.TotalTokens counted by
	// completions whose usage Parley estimated, in whole or in part.
	EstimatedTokens int64
}

// UsageStore keeps usage records.
type UsageStore interface {
	// InsertUsage stores records in one batch.
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

// UsageBatcher records usage in batches from a background goroutine: a
// completion appends its record and goes on, without waking anyone; the
// goroutine writes what has gathered every interval, or as soon as a batch
// is full. Records the database cannot take for now (it is unreachable)
// are kept and written again, oldest first, backing off from usageRetryMin
// to usageRetryMax, while new ones keep queueing behind them; beyond
// usageKeptBatches batches the oldest are dropped. Records the database
// refuses for good are written one by one, so that only those are lost.
// Shutdown (or Close) flushes what is left.
type UsageBatcher struct {
	store    UsageStore
	log      *slog.Logger
	maxBatch int
	every    time.Duration
	maxKept  int // usageKeptBatches batches

	mu      sync.Mutex
	pending []UsageRecord
	drained sync.Cond // signalled when pending was taken, or writes began to fail
	failing bool      // writes fail and are retried: Record does not wait, it drops the oldest beyond maxKept
	shed    int       // records Record so dropped, not yet counted by the goroutine
	closed  bool
	stop    context.Context // Shutdown's, set with closed
	kick    chan struct{}   // capacity 1: a batch is full, or Shutdown was called
	done    chan struct{}
	lost    error // what Shutdown could not write; set before done is closed

	// writes is the parent of every write, ended when Shutdown's context
	// is done: a write begun before Shutdown is bounded by it too.
	writes    context.Context
	endWrites context.CancelFunc

	// Only the goroutine uses these.
	kept    []UsageRecord // taken from pending and not written yet, oldest first
	spare   []UsageRecord // an empty array for pending, to reuse
	trouble usageTrouble
}

const (
	// usageBacklog is how many batches may wait, while the goroutine
	// writes, before Record blocks (unless writes fail: see usageKeptBatches).
	usageBacklog = 16
	// usageKeptBatches is how many batches are kept while writes fail;
	// beyond that the oldest records are dropped, rather than holding up
	// completions or growing without bound.
	usageKeptBatches = 100
	// usageRetryMin and usageRetryMax bound the wait before a failed write
	// is tried again; it doubles with each failure in a row.
	usageRetryMin = 100 * time.Millisecond
	usageRetryMax = 5 * time.Second
	// usageOneByOneAfter is how many failures in a row make the next try
	// write its records one by one, to find one the database keeps
	// refusing while it takes the others.
	usageOneByOneAfter = 3
	// usageWarnEvery is how often, at most, the failing writes are logged.
	usageWarnEvery = 30 * time.Second
	// usageWriteTimeout bounds one batch's write; usageCloseWait, Close's.
	usageWriteTimeout = 30 * time.Second
	usageCloseWait    = 10 * time.Second
)

// usageTrouble is what the goroutine knows of failing writes.
type usageTrouble struct {
	since    time.Time // the first failure since every record was written; zero if none
	attempts int       // tries in a row that wrote nothing
	retryAt  time.Time // no write before then
	err      error     // the last failure
	written  int       // records written since since
	warned   time.Time // when the failures were last logged

	dropped       int // records dropped beyond maxKept, not logged yet
	droppedWarned time.Time
}

// NewUsageBatcher starts a batcher that writes every interval or every
// maxBatch records, whichever comes first.
func NewUsageBatcher(store UsageStore, log *slog.Logger, maxBatch int, every time.Duration) *UsageBatcher {
	b := &UsageBatcher{store: store, log: log, maxBatch: maxBatch, every: every, maxKept: usageKeptBatches * maxBatch,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.writes, b.endWrites = context.WithCancel(context.Background())
	b.drained.L = &b.mu
	go b.run()
	return b
}

// Record queues rec. When usageBacklog batches wait already while the
// goroutine writes it waits for the writer, so no record is lost; while
// writes fail it does not wait, and drops the oldest queued record beyond
// the records kept. After Shutdown it writes rec at once.
func (b *UsageBatcher) Record(ctx context.Context, rec UsageRecord) {
	b.mu.Lock()
	for !b.closed && !b.failing && len(b.pending) >= usageBacklog*b.maxBatch {
		b.drained.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		syncRecorder{store: b.store, log: b.log}.Record(ctx, rec)
		return
	}
	if len(b.pending) >= b.maxKept { // only while failing, the goroutine being held up by a write
		b.pending[0] = UsageRecord{}
		b.pending = b.pending[1:]
		b.shed++
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
	defer b.endWrites()
	tick := time.NewTicker(b.every)
	defer tick.Stop()
	retry := time.NewTimer(usageRetryMax)
	retry.Stop()
	var stop context.Context // Shutdown's, once called
	for {
		var stopped <-chan struct{}
		if stop != nil {
			stopped = stop.Done()
		}
		select {
		case <-b.kick:
		case <-tick.C:
		case <-retry.C:
		case <-stopped:
		}
		if s := b.take(); s != nil && stop == nil {
			stop = s
			b.trouble.retryAt = time.Time{} // try at once
		}
		if stop != nil && stop.Err() != nil {
			b.giveUp(stop.Err())
			return
		}
		if time.Now().Before(b.trouble.retryAt) {
			continue
		}
		if b.write() {
			if stop != nil {
				return
			}
			continue
		}
		retry.Reset(time.Until(b.trouble.retryAt))
	}
}

// take moves the queued records behind those kept, drops the oldest
// beyond maxKept, and returns Shutdown's context once it was called.
func (b *UsageBatcher) take() context.Context {
	b.mu.Lock()
	in := b.pending
	b.pending = b.spare[:0]
	shed := b.shed
	b.shed = 0
	stop := b.stop
	b.drained.Broadcast()
	b.mu.Unlock()
	if len(b.kept) == 0 {
		b.kept, b.spare = in, b.kept[:0]
	} else {
		b.kept = append(b.kept, in...)
		clear(in)
		b.spare = in[:0]
	}
	over := max(len(b.kept)-b.maxKept, 0)
	b.forget(over)
	if dropped := shed + over; dropped > 0 {
		b.trouble.dropped += dropped
		if time.Since(b.trouble.droppedWarned) >= usageWarnEvery {
			b.logDropped()
		}
	}
	return stop
}

// forget removes the first n kept records.
func (b *UsageBatcher) forget(n int) {
	if n == 0 {
		return
	}
	left := copy(b.kept, b.kept[n:])
	clear(b.kept[left:])
	b.kept = b.kept[:left]
}

func (b *UsageBatcher) logDropped() {
	if b.trouble.dropped == 0 {
		return
	}
	b.log.Warn("usage records dropped: too many kept while writes fail; the oldest go first",
		"records", b.trouble.dropped, "kept", b.maxKept, "err", b.trouble.err)
	b.trouble.dropped, b.trouble.droppedWarned = 0, time.Now()
}

// write writes the kept records, oldest first, in batches of at most
// maxBatch, until a write fails in a way retrying may fix. It reports
// whether every record is written (or given up).
func (b *UsageBatcher) write() bool {
	done := 0 // kept[:done] are written or given up
	var err error
	for done < len(b.kept) && err == nil {
		chunk := b.kept[done:min(done+b.maxBatch, len(b.kept))]
		ctx, cancel := context.WithTimeout(b.writes, usageWriteTimeout)
		n := 0
		if b.trouble.attempts < usageOneByOneAfter {
			if err = b.store.InsertUsage(ctx, chunk); err == nil {
				n = len(chunk)
			}
		}
		if b.trouble.attempts >= usageOneByOneAfter || refused(err) {
			n, err = b.oneByOne(ctx, chunk)
		}
		cancel()
		done += n
		b.trouble.written += n
		if n > 0 {
			b.trouble.attempts = 0 // the database answers: batches again
		}
	}
	b.forget(done)
	if err != nil && b.writes.Err() != nil {
		// Shutdown's context ended the write: run gives up on what is
		// left as soon as it sees that context done.
		return false
	}
	if err != nil {
		b.failed(err)
		return false
	}
	b.recovered()
	return true
}

// refused reports whether err is one retrying cannot fix: a record that
// exists already (Conflict) or one the database will not take (NotFound:
// its project was deleted; Invalid).
func refused(err error) bool {
	if err == nil {
		return false
	}
	switch KindOf(err) {
	case Conflict, NotFound, Invalid:
		return true
	}
	return false
}

// oneByOne writes chunk a record at a time, after a batch of it was
// refused or kept failing, and returns how many of its first records are
// written or given up. A record that exists already is skipped: a write
// went through though its reply was lost. One the database refuses is
// dropped with a warning. On a failure retrying may fix it stops, unless
// the database takes the next record: then the failing one is tried once
// more right away, and dropped if it fails again.
func (b *UsageBatcher) oneByOne(ctx context.Context, chunk []UsageRecord) (int, error) {
	var existing, refusedN int
	var refusal error
	settle := func(err error) {
		switch {
		case err == nil:
		case KindOf(err) == Conflict:
			existing++
		default:
			if refusedN++; refusal == nil {
				refusal = err
			}
		}
	}
	defer func() {
		if existing > 0 {
			b.log.Debug("usage records written already; skipped", "records", existing)
		}
		if refusedN > 0 {
			b.log.Warn("usage records dropped: the database refuses them", "records", refusedN, "err", refusal)
		}
	}()
	suspect := -1 // a record that failed, the one before i
	var last error
	for i := range chunk {
		err := b.store.InsertUsage(ctx, chunk[i:i+1])
		if err != nil && !refused(err) {
			if suspect >= 0 {
				return suspect, err // two in a row: the database is down
			}
			suspect, last = i, err
			continue
		}
		settle(err)
		if suspect >= 0 {
			// The database took record i, so retrying the suspect now
			// tells whether the fault is the suspect's.
			err := b.store.InsertUsage(ctx, chunk[suspect:suspect+1])
			if err != nil && !refused(err) {
				b.log.Warn("usage record dropped: the database refuses it while it takes others",
					"id", chunk[suspect].ID, "project", chunk[suspect].ProjectID, "err", err)
			} else {
				settle(err)
			}
			suspect = -1
		}
	}
	if suspect >= 0 {
		return suspect, last
	}
	return len(chunk), nil
}

// failed notes a write that failed with err, logs it unless it was logged
// lately, and sets when to try again.
func (b *UsageBatcher) failed(err error) {
	t := &b.trouble
	now := time.Now()
	t.attempts++
	t.err = err
	switch {
	case t.since.IsZero():
		t.since, t.warned, t.written = now, now, 0
		b.mu.Lock()
		b.failing = true
		b.drained.Broadcast()
		b.mu.Unlock()
		b.log.Warn("usage records not written; kept and retried", "records", len(b.kept), "err", err)
	case now.Sub(t.warned) >= usageWarnEvery:
		t.warned = now
		b.log.Warn("usage records still not written; kept and retried",
			"records", len(b.kept), "for", now.Sub(t.since).Round(time.Second), "attempts", t.attempts, "err", err)
	}
	wait := usageRetryMin << min(t.attempts-1, 16)
	t.retryAt = now.Add(min(wait, usageRetryMax))
}

// recovered notes that every kept record is written, logging it once
// after failures.
func (b *UsageBatcher) recovered() {
	t := &b.trouble
	t.attempts, t.retryAt = 0, time.Time{}
	if t.since.IsZero() {
		return
	}
	b.logDropped()
	b.log.Info("usage backlog written", "records", t.written, "after", time.Since(t.since).Round(time.Millisecond))
	t.since, t.err = time.Time{}, nil
	b.mu.Lock()
	b.failing = false
	b.mu.Unlock()
}

// giveUp ends Shutdown, once its context is done, with the records it
// could not write.
func (b *UsageBatcher) giveUp(cause error) {
	b.logDropped()
	if len(b.kept) == 0 {
		return
	}
	err := b.trouble.err
	if err == nil {
		err = cause
	}
	b.log.Error("usage records lost: not written before shutdown ended", "records", len(b.kept), "err", err)
	b.lost = &Error{Kind: Unavailable, Op: "usage.Shutdown", Message: fmt.Sprintf("%d usage records were not written", len(b.kept)), Err: err}
}

// Shutdown writes what is queued, and what failed and is kept, trying
// again as before until ctx is done, which also ends a write begun before
// Shutdown was called; records that come later are written one by one as
// they come. It returns an Unavailable error, also logged,
// counting the records it could not write.
func (b *UsageBatcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed, b.stop = true, ctx
		b.drained.Broadcast()
		defer context.AfterFunc(ctx, b.endWrites)()
	}
	b.mu.Unlock()
	b.wake()
	<-b.done
	return b.lost
}

// Close is Shutdown allowing usageCloseWait.
func (b *UsageBatcher) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), usageCloseWait)
	defer cancel()
	_ = b.Shutdown(ctx) // logged
}

// unixEpoch is the earliest time a usage period covers.
var unixEpoch = time.Unix(0, 0).UTC()

// UsageReports answers usage queries.
type UsageReports struct {
	store  Store
	access access
	now    func() time.Time
}

// UsageInput is the input of UsageReports.Get. Zero From means 30 days
// before To; zero To means now. Page selects a page of the groups; a page
// after the first sums the first one's period, which From and To, when
// set, must be.
type UsageInput struct {
	ProjectID string
	From, To  time.Time
	GroupBy   UsageGroupBy
	Page      Page
}

// UsageReport is a page of a project's usage totals and the period they
// cover.
type UsageReport struct {
	From, To   time.Time // From inclusive, To exclusive, the defaults resolved
	Totals     []UsageTotal
	NextCursor string // "" on the last page, and when not grouped
}

// Get returns a page of a project's usage totals over the period in asks
// for, grouped as it asks, ordered by key byte by byte. Not grouped, the
// report is one total, on one page.
func (s *UsageReports) Get(ctx context.Context, in UsageInput) (UsageReport, error) {
	if err := s.access.checkProject(ctx, in.ProjectID, PermGetUsage); err != nil {
		return UsageReport{}, err
	}
	if in.GroupBy != "" && !slices.Contains(UsageGroupings, in.GroupBy) {
		return UsageReport{}, ErrUnknownGrouping()
	}
	page := in.Page.limited()
	var after *string
	if in.Page.After != "" {
		c, ok := parseUsageCursor(in.Page.After)
		if !ok {
			return UsageReport{}, foreignCursor()
		}
		if err := c.check(in); err != nil {
			return UsageReport{}, err
		}
		in.From, in.To, after = c.from, c.to, &c.key
	}
	if in.To.IsZero() {
		in.To = s.now().Add(time.Second)
	}
	if in.From.IsZero() {
		in.From = in.To.Add(-30 * 24 * time.Hour)
	}
	// The report gives its period back in the API's milliseconds: sum
	// exactly that period, so that the next one asked for from this one's
	// end counts no record twice (nor misses one, from its start).
	in.From, in.To = periodStart(in.From), in.To.Truncate(time.Millisecond)
	if !in.To.After(unixEpoch) && !in.From.After(unixEpoch) {
		var totals []UsageTotal
		if in.GroupBy == "" {
			// Ungrouped, the report is one total, zero when nothing was
			// recorded, as for any other empty period.
			totals = []UsageTotal{{}}
		}
		return UsageReport{From: unixEpoch, To: unixEpoch, Totals: totals}, nil
	}
	if !in.From.Before(in.To) {
		return UsageReport{}, Invalidf("from", "from must be before to, to the millisecond (%s is not before %s)",
			in.From.Format(time.RFC3339Nano), in.To.Format(time.RFC3339Nano))
	}
	q := UsageQuery{ProjectID: in.ProjectID, From: in.From, To: in.To, GroupBy: in.GroupBy}
	if in.GroupBy != "" {
		q.After, q.Limit = after, page.Limit+1
	}
	totals, err := s.store.SumUsage(ctx, q)
	if err != nil {
		return UsageReport{}, Wrap("usage.Get", err)
	}
	rep := UsageReport{From: in.From, To: in.To, Totals: totals}
	if in.GroupBy != "" {
		l := paginate(totals, page, func(t UsageTotal) string {
			return usageCursor{projectID: in.ProjectID, groupBy: in.GroupBy, from: in.From, to: in.To, key: t.Key}.String()
		})
		rep.Totals, rep.NextCursor = l.Items, l.NextCursor
	}
	return rep, nil
}

// periodStart is the start of a usage period from t: cut to the
// millisecond, as the API gives times back, and not before the Unix
// epoch. Nothing is recorded before the epoch, and the transports read an
// earlier time as the epoch: a period that ends there is empty, not one
// whose from is not before its to, unless its from is after the epoch.
func periodStart(t time.Time) time.Time {
	t = t.Truncate(time.Millisecond)
	if t.Before(unixEpoch) {
		return unixEpoch
	}
	return t
}

// usageCursor is where a page of a usage report ends. The groups are
// ordered by key, byte by byte, so the cursor is the last key of a page;
// and as a key may be any text (a model's name), the cursor also names
// the report it belongs to: its project, grouping and period, defaults
// resolved. A cursor of another report would answer a page of this one
// after a key of that one, and pages over periods that differ (the
// default one ends a second after each request) would not add up. As
// text,
//
//	usage:<projectId>:<groupBy>:<from>:<to>:<key>
//
// with from and to in Unix milliseconds, and the key last, so that it may
// hold a ":". The key of the group without one (stateless completions, by
// chat) is empty.
type usageCursor struct {
	projectID string
	groupBy   UsageGroupBy
	from, to  time.Time
	key       string
}

const usageCursorPrefix = "usage:"

// apiTime is the layout of the times the API gives back.
const apiTime = "2006-01-02T15:04:05.000Z"

// maxUsageMilli bounds the times of a usage cursor: the latest a report's
// period can name, the last millisecond of 9999 in UTC (the transports
// refuse a later time).
var maxUsageMilli = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - 1

func (c usageCursor) String() string {
	return usageCursorPrefix + c.projectID + ":" + string(c.groupBy) + ":" +
		strconv.FormatInt(c.from.UnixMilli(), 10) + ":" + strconv.FormatInt(c.to.UnixMilli(), 10) + ":" + c.key
}

// validUsageCursor reports whether s is a usage report's cursor.
func validUsageCursor(s string) bool {
	_, ok := parseUsageCursor(s)
	return ok
}

// parseUsageCursor reads a cursor as usageCursor.String writes it. One
// that String could not have written for a report Get answers is not one:
// a grouping not in UsageGroupings, a period that is empty or beyond
// maxUsageMilli, a number written another way, or a key no group can have
// (not UTF-8, or with a NUL, which PostgreSQL refuses even to compare).
func parseUsageCursor(s string) (usageCursor, bool) {
	rest, ok := strings.CutPrefix(s, usageCursorPrefix)
	if !ok {
		return usageCursor{}, false
	}
	parts := strings.SplitN(rest, ":", 5)
	if len(parts) != 5 {
		return usageCursor{}, false
	}
	from, okFrom := parseMilli(parts[2])
	to, okTo := parseMilli(parts[3])
	c := usageCursor{projectID: parts[0], groupBy: UsageGroupBy(parts[1]), key: parts[4]}
	if !validID(PrefixProject, c.projectID) || !slices.Contains(UsageGroupings, c.groupBy) || !okFrom || !okTo || from >= to ||
		!utf8.ValidString(c.key) || strings.IndexByte(c.key, 0) >= 0 {
		return usageCursor{}, false
	}
	c.from, c.to = time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC()
	return c, true
}

// parseMilli reads a time of a usage cursor, in Unix milliseconds.
func parseMilli(digits string) (int64, bool) {
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil && n >= 0 && n <= maxUsageMilli && strconv.FormatInt(n, 10) == digits
}

// check reports, as an Invalid naming cursor, how the report in asks for
// differs from the one c belongs to: another project, another grouping, or
// another period. From and To left out are c's.
func (c usageCursor) check(in UsageInput) error {
	const again = "; ask for its next page with the same groupBy, from and to (or without from and to), or leave cursor out to start a new report"
	switch {
	case c.projectID != in.ProjectID:
		return Invalidf("cursor", "cursor belongs to the usage report of another project; pass the nextCursor of the previous page of this report unchanged")
	case c.groupBy != in.GroupBy:
		return Invalidf("cursor", "cursor belongs to the usage report grouped by %s"+again, c.groupBy)
	case !in.From.IsZero() && !periodStart(in.From).Equal(c.from),
		!in.To.IsZero() && !in.To.Truncate(time.Millisecond).Equal(c.to):
		return Invalidf("cursor", "cursor belongs to the usage report from %s to %s"+again,
			c.from.Format(apiTime), c.to.Format(apiTime))
	}
	return nil
}
