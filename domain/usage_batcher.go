package domain

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

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

	droppedTotal atomic.Int64 // records dropped so far, for Dropped
	// keptLen is len(kept), for Waiting: take adds the records it moves
	// from pending while it holds mu, the goroutine sets it after.
	keptLen atomic.Int64
	// writesTo is told how each write went (see ReportWrites).
	writesTo atomic.Pointer[func(error)]

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

// Dropped returns how many records were dropped so far: refused by the
// database, or beyond what is kept while writes fail (each logged too).
func (b *UsageBatcher) Dropped() int64 { return b.droppedTotal.Load() }

// Waiting returns how many records wait to be written: queued, and kept
// while writes fail. Rising, it says the database is refusing them.
func (b *UsageBatcher) Waiting() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.pending)) + b.keptLen.Load()
}

// ReportWrites has f told how each write of records went: nil when some
// were written, else the error (Completions.NoteUsageWrite, which learns from it
// that the database takes writes again, or does not).
func (b *UsageBatcher) ReportWrites(f func(error)) { b.writesTo.Store(&f) }

// report tells ReportWrites's f how a write went.
func (b *UsageBatcher) report(err error) {
	if f := b.writesTo.Load(); f != nil {
		(*f)(err)
	}
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
	b.keptLen.Add(int64(len(in))) // with pending's, so that Waiting sees them once
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
	b.keptLen.Store(int64(len(b.kept)))
	if dropped := shed + over; dropped > 0 {
		b.droppedTotal.Add(int64(dropped))
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
	b.keptLen.Store(int64(left))
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
	if err != nil || done > 0 {
		b.report(err)
	}
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
// went through though its reply was lost; one of a project deleted since
// is skipped (its delete would have taken it too). One the database
// refuses otherwise is dropped with a warning. On a failure retrying may
// fix it stops, unless the database takes the next record: then the
// failing one is tried once more right away, and dropped if it fails
// again.
func (b *UsageBatcher) oneByOne(ctx context.Context, chunk []UsageRecord) (int, error) {
	var existing, gone, refusedN int
	var refusal error
	settle := func(err error) {
		switch {
		case err == nil:
		case KindOf(err) == Conflict:
			existing++
		case KindOf(err) == NotFound:
			gone++
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
		if gone > 0 {
			b.log.Info("usage records of deleted projects skipped", "records", gone)
		}
		if refusedN > 0 {
			b.droppedTotal.Add(int64(refusedN))
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
				b.droppedTotal.Add(1)
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
