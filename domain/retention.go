package domain

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Retention is how long Parley keeps what its completions leave behind;
// a zero duration keeps it for ever, the default. It is the server's, set
// by its operator (PARLEY_USAGE_RETENTION, PARLEY_CONVERSATION_RETENTION):
// without it usage records and conversations grow without end.
type Retention struct {
	// Usage is how long a usage record is kept after its completion; the
	// usage report covers no time before it.
	Usage time.Duration
	// Conversations is how long a conversation is kept after its last
	// turn, with its messages (and the idempotency keys stored with them).
	Conversations time.Duration
}

// MinRetention is the least retention that may be set: less would delete
// what a client is still reading.
const MinRetention = time.Hour

// RetentionStore deletes what is past its retention, a bounded chunk per
// statement, so that other writes take their turn between them.
type RetentionStore interface {
	// DeleteUsageBefore deletes the usage records created before t and
	// returns how many it deleted.
	DeleteUsageBefore(ctx context.Context, t time.Time) (int64, error)
	// DeleteConversationsBefore deletes the conversations last updated
	// before t, with their messages, and returns how many it deleted. A
	// conversation goes whole or not at all; one continued while it runs
	// is kept. hold, when set, is asked for each before it is deleted: nil
	// keeps it, else release is called once the delete is done.
	DeleteConversationsBefore(ctx context.Context, t time.Time, hold func(id string) (release func())) (int64, error)
}

// Swept is what one sweep deleted.
type Swept struct {
	UsageRecords  int64
	Conversations int64
}

// On reports whether r deletes anything.
func (r Retention) On() bool { return r.Usage > 0 || r.Conversations > 0 }

// Sweep deletes, once, what is past r at now, but the conversations hold
// keeps (those completions are continuing; see
// DeleteConversationsBefore). A failure of one kind does not
// keep the other from its sweep; what was deleted before it is counted.
func (r Retention) Sweep(ctx context.Context, st RetentionStore, now time.Time, hold func(id string) (release func())) (Swept, error) {
	var s Swept
	var errs []error
	if r.Usage > 0 {
		n, err := st.DeleteUsageBefore(ctx, now.Add(-r.Usage))
		s.UsageRecords = n
		errs = append(errs, err)
	}
	if r.Conversations > 0 {
		n, err := st.DeleteConversationsBefore(ctx, now.Add(-r.Conversations), hold)
		s.Conversations = n
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// RetentionSweeper runs a Retention's sweep at start and then every
// Every, until its context ends.
type RetentionSweeper struct {
	Retention Retention
	Store     RetentionStore
	Every     time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
	// Hold, if set, keeps the conversations completions are continuing
	// from the sweep, and the others from completions while it deletes
	// them (Completions.HoldForSweep): a continuation of a conversation past
	// its retention, already paid for upstream, must find it when it
	// stores its turn, and one that arrives as the sweep deletes it must
	// not go upstream.
	Hold func(id string) (release func())
	// Swept, if set, is told what each sweep deleted (metrics).
	Swept func(Swept)
}

// Run sweeps until ctx ends; a failed sweep is logged and tried again at
// the next.
func (w *RetentionSweeper) Run(ctx context.Context) {
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		s, err := w.Retention.Sweep(ctx, w.Store, w.Now(), w.Hold)
		if w.Swept != nil {
			w.Swept(s)
		}
		switch {
		case ctx.Err() != nil:
			if s != (Swept{}) {
				w.Logger.Info("retention sweep stopped by shutdown; it goes on at the next start",
					"usageRecords", s.UsageRecords, "conversations", s.Conversations)
			}
			return
		case err != nil:
			w.Logger.Warn("retention sweep failed; it runs again later", "err", err,
				"usageRecords", s.UsageRecords, "conversations", s.Conversations)
		case s != Swept{}:
			w.Logger.Info("retention sweep deleted what was past its retention",
				"usageRecords", s.UsageRecords, "conversations", s.Conversations)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
