package domain_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// usageSink is a UsageStore that keeps what it is given, in memory, and
// refuses records of the project "gone" as the store does once the project
// is deleted (NotFound), and those of the project "bad" as it does a
// record it cannot take (Invalid).
type usageSink struct {
	mu      sync.Mutex
	batches [][]string // ids, per InsertUsage call that succeeded
	block   chan struct{}
}

func (s *usageSink) InsertUsage(_ context.Context, records []domain.UsageRecord) error {
	if s.block != nil {
		<-s.block
	}
	ids := make([]string, len(records))
	for i, r := range records {
		switch r.ProjectID {
		case "gone":
			return &domain.Error{Kind: domain.NotFound, Op: "store.InsertUsage", Message: "project gone does not exist",
				Err: errors.New("FOREIGN KEY constraint failed")}
		case "bad":
			return &domain.Error{Kind: domain.Invalid, Op: "store.InsertUsage", Message: "a value is out of range"}
		}
		ids[i] = r.ID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, ids)
	return nil
}

func (s *usageSink) SumUsage(context.Context, domain.UsageQuery) ([]domain.UsageTotal, error) {
	return nil, nil
}

func (s *usageSink) stored() (batches int, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		ids = append(ids, b...)
	}
	return len(s.batches), ids
}

func records(n int, project string) []domain.UsageRecord {
	out := make([]domain.UsageRecord, n)
	for i := range out {
		out[i] = domain.UsageRecord{ID: fmt.Sprintf("%s-%03d", project, i), ProjectID: project}
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestUsageBatcher(t *testing.T) {
	t.Run("a full batch is written at once", func(t *testing.T) {
		sink := &usageSink{}
		b := domain.NewUsageBatcher(sink, quiet(), 10, time.Hour)
		defer b.Close()
		for _, r := range records(10, "p") {
			b.Record(context.Background(), r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if n, ids := sink.stored(); n == 1 && len(ids) == 10 {
				return
			}
			if time.Now().After(deadline) {
				n, ids := sink.stored()
				t.Fatalf("after 5s: %d batches, %d records; want the full batch of 10 written without waiting for the hour", n, len(ids))
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("a partial batch is written at the interval", func(t *testing.T) {
		sink := &usageSink{}
		b := domain.NewUsageBatcher(sink, quiet(), 100, 20*time.Millisecond)
		defer b.Close()
		for _, r := range records(3, "p") {
			b.Record(context.Background(), r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ids := sink.stored(); len(ids) == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("3 records were not written within 5s at an interval of 20ms")
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("close writes every record, in batches no larger than the maximum", func(t *testing.T) {
		sink := &usageSink{block: make(chan struct{})}
		b := domain.NewUsageBatcher(sink, quiet(), 4, time.Hour)
		// The writer is held up, so records pile up behind the first batch.
		var wg sync.WaitGroup
		wg.Go(func() {
			for _, r := range records(30, "p") {
				b.Record(context.Background(), r)
			}
		})
		wg.Wait()
		close(sink.block)
		b.Close()
		n, ids := sink.stored()
		if len(ids) != 30 {
			t.Fatalf("%d records stored; want all 30", len(ids))
		}
		if n < 30/4 {
			t.Errorf("%d batches for 30 records; want batches of at most 4", n)
		}
		for i, id := range ids {
			if want := fmt.Sprintf("p-%03d", i); id != want {
				t.Fatalf("record %d is %s; want %s (in order)", i, id, want)
			}
		}
		// After Close a record is written at once.
		b.Record(context.Background(), domain.UsageRecord{ID: "late", ProjectID: "p"})
		if _, ids := sink.stored(); ids[len(ids)-1] != "late" {
			t.Errorf("a record after Close was not written at once")
		}
	})
	t.Run("a refused record is dropped, not its batch; a deleted project's is not lost", func(t *testing.T) {
		sink := &usageSink{}
		log := &logs{}
		b := domain.NewUsageBatcher(sink, slog.New(log), 100, time.Hour)
		rs := records(5, "p")
		rs[2].ProjectID, rs[3].ProjectID = "gone", "bad"
		for _, r := range rs {
			b.Record(context.Background(), r)
		}
		b.Close()
		_, ids := sink.stored()
		if got, want := fmt.Sprint(ids), "[p-000 p-001 p-004]"; got != want {
			t.Errorf("stored %s; want %s", got, want)
		}
		if got, want := log.sum("usage records dropped: the database refuses them", "records"), int64(1); got != want {
			t.Errorf("warnings count %d records refused; want %d\n%s", got, want, log)
		}
		// The deleted project's went with it, as its delete meant: no
		// alarm, no loss counted, a line saying so.
		if got, want := log.sum("usage records of deleted projects skipped", "records"), int64(1); got != want {
			t.Errorf("%d records of deleted projects logged as skipped; want %d\n%s", got, want, log)
		}
		if got := b.Dropped(); got != 1 {
			t.Errorf("Dropped() = %d, want 1 (the metric's count: the refused record only)", got)
		}
	})
	t.Run("a full backlog holds up Record instead of losing records", func(t *testing.T) {
		sink := &usageSink{block: make(chan struct{})}
		b := domain.NewUsageBatcher(sink, quiet(), 1, time.Hour)
		// 1 batch being written plus a backlog of 16 fill it up.
		recorded := make(chan int, 100)
		go func() {
			for i, r := range records(40, "p") {
				b.Record(context.Background(), r)
				recorded <- i
			}
			close(recorded)
		}()
		// Once the records that fit are in, the rest wait.
		for deadline := time.Now().Add(5 * time.Second); len(recorded) < 16; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d records were taken in 5s; want the backlog's 16", len(recorded))
			}
		}
		time.Sleep(50 * time.Millisecond)
		if n := len(recorded); n >= 40 {
			t.Fatalf("all %d records were taken while the writer was stuck; want Record to wait", n)
		}
		close(sink.block)
		for range recorded {
		}
		b.Close()
		if _, ids := sink.stored(); len(ids) != 40 {
			t.Errorf("%d records stored; want 40", len(ids))
		}
	})
}

// logs is a slog.Handler that keeps what is logged, for tests to read.
type logs struct {
	mu      sync.Mutex
	entries []logEntry
}

type logEntry struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	e := logEntry{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		e.attrs[a.Key] = a.Value.Any()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	return nil
}

// find returns the entries logged with msg.
func (l *logs) find(msg string) []logEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEntry
	for _, e := range l.entries {
		if e.msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// sum adds up the integer attribute key of the entries logged with msg.
func (l *logs) sum(msg, key string) int64 {
	var n int64
	for _, e := range l.find(msg) {
		v, _ := e.attrs[key].(int64)
		n += v
	}
	return n
}

// losses returns the warnings and errors that say records were lost or
// dropped.
func (l *logs) losses() []logEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEntry
	for _, e := range l.entries {
		if e.level >= slog.LevelWarn && (strings.Contains(e.msg, "lost") || strings.Contains(e.msg, "dropped")) {
			out = append(out, e)
		}
	}
	return out
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s string
	for _, e := range l.entries {
		s += fmt.Sprintf("%s %s %v\n", e.level, e.msg, e.attrs)
	}
	return s
}

// flakyStore is a UsageStore that keeps records in memory, all of a batch
// or none, and says Conflict for a batch holding an id it has, as the store
// does. Before each insert, fault (when set) may fail it, as a database
// that cannot be reached would, and say whether the batch was stored all
// the same (the reply was lost). Each failed call's number is sent on
// failures when there is room.
type flakyStore struct {
	fault    func(call int, records []domain.UsageRecord) (stored bool, err error)
	failures chan int

	mu    sync.Mutex
	calls int
	ids   []string
	have  map[string]bool
}

func newFlakyStore(fault func(call int, records []domain.UsageRecord) (bool, error)) *flakyStore {
	return &flakyStore{fault: fault, failures: make(chan int, 10000), have: map[string]bool{}}
}

func (s *flakyStore) InsertUsage(_ context.Context, records []domain.UsageRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	var err error
	stored := true
	if s.fault != nil {
		if stored, err = s.fault(s.calls, records); err == nil {
			stored = true
		}
	}
	if stored {
		for _, r := range records {
			if s.have[r.ID] {
				return &domain.Error{Kind: domain.Conflict, Op: "store.InsertUsage", Message: "a usage record with one of these ids already exists"}
			}
		}
		for _, r := range records {
			s.have[r.ID] = true
			s.ids = append(s.ids, r.ID)
		}
	}
	if err != nil {
		select {
		case s.failures <- s.calls:
		default:
		}
	}
	return err
}

func (s *flakyStore) SumUsage(context.Context, domain.UsageQuery) ([]domain.UsageTotal, error) {
	return nil, nil
}

func (s *flakyStore) stored() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func (s *flakyStore) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// waitFailures returns once call number n or a later one has failed.
func (s *flakyStore) waitFailures(n int) {
	for call := range s.failures {
		if call >= n {
			return
		}
	}
}

// unreachable is the error the store gives while the database cannot be
// reached.
func unreachable() error {
	return &domain.Error{Kind: domain.Internal, Op: "store.InsertUsage",
		Err: errors.New("failed to connect to `user=parley database=parley`: dial tcp 127.0.0.1:5432: connect: connection refused")}
}

func ids(rs []domain.UsageRecord) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestUsageBatcherRetries(t *testing.T) {
	const (
		kept    = "usage records not written; kept and retried"
		still   = "usage records still not written; kept and retried"
		written = "usage backlog written"
		dropped = "usage records dropped: too many kept while writes fail; the oldest go first"
		refused = "usage records dropped: the database refuses them"
		lost    = "usage records lost: not written before shutdown ended"
	)
	t.Run("a batch that failed is written once the database is back, every record once and in order", func(t *testing.T) {
		st := newFlakyStore(func(call int, _ []domain.UsageRecord) (bool, error) {
			if call <= 3 {
				return false, unreachable()
			}
			return true, nil
		})
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 4, 10*time.Millisecond)
		rs := records(20, "p")
		for _, r := range rs[:10] {
			b.Record(context.Background(), r)
		}
		st.waitFailures(1)
		// Records keep queueing while the batch is retried.
		for _, r := range rs[10:] {
			b.Record(context.Background(), r)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got, want := fmt.Sprint(st.stored()), fmt.Sprint(ids(rs)); got != want {
			t.Errorf("stored %s;\nwant %s", got, want)
		}
		if got := len(log.find(kept)) + len(log.find(still)); got != 1 {
			t.Errorf("%d warnings for 3 failures; want 1\n%s", got, log)
		}
		if got := len(log.find(written)); got != 1 {
			t.Errorf("%d lines say the backlog was written; want 1\n%s", got, log)
		}
		if got := log.losses(); len(got) != 0 {
			t.Errorf("logged %v; want no record said lost or dropped", got)
		}
	})
	t.Run("a batch stored though its reply was lost is not stored twice", func(t *testing.T) {
		st := newFlakyStore(func(call int, _ []domain.UsageRecord) (bool, error) {
			if call == 1 {
				return true, &domain.Error{Kind: domain.Unavailable, Op: "store.InsertUsage", Err: context.DeadlineExceeded}
			}
			return true, nil
		})
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 5, time.Hour)
		rs := records(10, "p")
		for _, r := range rs[:5] { // a full batch: written at once
			b.Record(context.Background(), r)
		}
		st.waitFailures(1)
		for _, r := range rs[5:] {
			b.Record(context.Background(), r)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got, want := fmt.Sprint(st.stored()), fmt.Sprint(ids(rs)); got != want {
			t.Errorf("stored %s;\nwant %s", got, want)
		}
		if got := log.losses(); len(got) != 0 {
			t.Errorf("logged %v; want no record said lost or dropped", got)
		}
	})
	t.Run("a record the database refuses while it takes others is dropped alone", func(t *testing.T) {
		// Not a kind retrying is known not to fix, as PostgreSQL's refusal
		// of a NUL character would be.
		st := newFlakyStore(func(_ int, rs []domain.UsageRecord) (bool, error) {
			if slices.Contains(ids(rs), "p-002") {
				return false, &domain.Error{Kind: domain.Internal, Op: "store.InsertUsage", Err: errors.New("invalid byte sequence for encoding \"UTF8\": 0x00")}
			}
			return true, nil
		})
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 10, time.Hour)
		rs := records(10, "p")
		for _, r := range rs {
			b.Record(context.Background(), r)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		want := slices.Delete(ids(rs), 2, 3)
		if got := st.stored(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("stored %s;\nwant %s", got, want)
		}
		w := log.find("usage record dropped: the database refuses it while it takes others")
		if len(w) != 1 || w[0].attrs["id"] != "p-002" {
			t.Errorf("warnings %v; want one naming p-002\n%s", w, log)
		}
		if got := b.Dropped(); got != 1 {
			t.Errorf("Dropped() = %d, want the one record dropped counted (parley_usage_records_dropped_total)", got)
		}
	})
	t.Run("beyond the records kept the oldest are dropped and counted", func(t *testing.T) {
		const keptMax = 100 // usageKeptBatches batches of 1
		var mu sync.Mutex
		down := true
		st := newFlakyStore(func(int, []domain.UsageRecord) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return false, unreachable()
			}
			return true, nil
		})
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 1, time.Hour)
		rs := records(keptMax+50, "p")
		for _, r := range rs { // not held up: writes fail
			b.Record(context.Background(), r)
		}
		// Two more failures: the second one's batch was taken after the
		// last record (a batch of 1 is one call).
		st.waitFailures(st.callCount() + 2)
		if got := b.Waiting(); got != keptMax {
			t.Errorf("Waiting() = %d while writes fail, want the %d kept (parley_usage_records_waiting)", got, keptMax)
		}
		mu.Lock()
		down = false
		mu.Unlock()
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got, want := fmt.Sprint(st.stored()), fmt.Sprint(ids(rs[50:])); got != want {
			t.Errorf("stored %s;\nwant the newest %d: %s", got, keptMax, want)
		}
		if got, want := log.sum(dropped, "records"), int64(50); got != want {
			t.Errorf("warnings count %d records dropped; want %d\n%s", got, want, log)
		}
		if got := b.Dropped(); got != 50 {
			t.Errorf("Dropped() = %d, want 50 (the metric's count)", got)
		}
		if got := b.Waiting(); got != 0 {
			t.Errorf("Waiting() = %d once every record was written, want 0", got)
		}
	})
	t.Run("shutdown tries until its context is done and counts what it could not write", func(t *testing.T) {
		st := newFlakyStore(func(int, []domain.UsageRecord) (bool, error) { return false, unreachable() })
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 10, time.Hour)
		for _, r := range records(3, "p") {
			b.Record(context.Background(), r)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			st.waitFailures(2) // tried, and tried again
			cancel()
		}()
		err := b.Shutdown(ctx)
		if got, want := domain.KindOf(err), domain.Unavailable; err == nil || got != want {
			t.Errorf("Shutdown: %v (%s); want %s", err, got, want)
		}
		if got, want := log.sum(lost, "records"), int64(3); got != want {
			t.Errorf("logged %d records lost; want %d\n%s", got, want, log)
		}
		if got := len(log.find(kept)) + len(log.find(still)); got != 1 {
			t.Errorf("%d warnings while retrying; want 1\n%s", got, log)
		}
	})
}

// TestUsageBatcherStore writes through the real store: a record written
// already is skipped, and those of a project deleted while they waited are
// dropped, not the others.
func TestUsageBatcherStore(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Now().UTC().Truncate(time.Second)
		u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: "ann", CreatedAt: t0}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		project := func(name string) string {
			p := &domain.Project{ID: domain.NewID(domain.PrefixProject), Name: name, CreatedAt: t0, UpdatedAt: t0}
			m := domain.Member{ProjectID: p.ID, UserID: u.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0}
			if err := st.CreateProject(ctx, p, m); err != nil {
				t.Fatal(err)
			}
			return p.ID
		}
		kept, gone := project("kept"), project("gone")
		var rs []domain.UsageRecord
		for i, p := range []string{kept, gone, kept, gone, kept} {
			rs = append(rs, domain.UsageRecord{ID: fmt.Sprintf("msg_%d", i), ProjectID: p, UserID: u.ID, Model: "m",
				Usage: domain.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}, Outcome: domain.OutcomeOK, CreatedAt: t0})
		}
		// The first is in the database already: a write went through
		// though its reply was lost.
		if err := st.InsertUsage(ctx, rs[:1]); err != nil {
			t.Fatal(err)
		}
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 100, time.Hour)
		for _, r := range rs {
			b.Record(ctx, r)
		}
		if err := st.DeleteProject(ctx, gone); err != nil {
			t.Fatal(err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		totals, err := st.SumUsage(ctx, domain.UsageQuery{ProjectID: kept, From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(totals) != 1 || totals[0].Requests != 3 {
			t.Errorf("project kept has totals %+v; want 3 requests (msg_0 once, msg_2, msg_4)", totals)
		}
		if got, want := log.sum("usage records of deleted projects skipped", "records"), int64(2); got != want {
			t.Errorf("%d records logged as of deleted projects; want %d\n%s", got, want, log)
		}
		if l := log.losses(); len(l) != 0 || b.Dropped() != 0 {
			t.Errorf("the deleted project's records were counted lost (%d) or warned of: %v", b.Dropped(), l)
		}
	})
}

// insertCounter is the real store, counting its InsertUsage calls.
type insertCounter struct {
	*store.Store
	calls atomic.Int32
}

func (s *insertCounter) InsertUsage(ctx context.Context, records []domain.UsageRecord) error {
	s.calls.Add(1)
	return s.Store.InsertUsage(ctx, records)
}

// TestUsageBatcherKeepsUsageOfDeletedResources: usage outlives what it
// names but its project. A batch of records whose chat, conversation or
// provider was deleted, or whose API key was revoked, while they waited
// is written whole, in one write, and each counts in the report by chat,
// provider and key: completions that ended as their resources went are
// still paid for.
func TestUsageBatcherKeepsUsageOfDeletedResources(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Now().UTC().Truncate(time.Second)
		u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: "ann", CreatedAt: t0}
		must(t, st.CreateUser(ctx, u))
		key := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "k", Hash: []byte(domain.NewID("h_")), Hint: "pk_x", CreatedAt: t0}
		must(t, st.CreateAPIKey(ctx, key))
		p := &domain.Project{ID: domain.NewID(domain.PrefixProject), Name: "p", CreatedAt: t0, UpdatedAt: t0}
		must(t, st.CreateProject(ctx, p, domain.Member{ProjectID: p.ID, UserID: u.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0}))
		provider := func() string {
			v := &domain.AIProvider{ID: domain.NewID(domain.PrefixProvider), ProjectID: p.ID, Name: "fake", Type: domain.ProviderOpenAI,
				DefaultModel: "m", CreatedAt: t0, UpdatedAt: t0}
			must(t, st.CreateProvider(ctx, v))
			return v.ID
		}
		chat := func(prov string) string {
			c := &domain.Chat{ID: domain.NewID(domain.PrefixChat), ProjectID: p.ID, AIProviderID: prov, Name: "c", CreatedAt: t0, UpdatedAt: t0}
			must(t, st.CreateChat(ctx, c))
			return c.ID
		}
		conversation := func(chat string) string {
			c := &domain.Conversation{ID: domain.NewID(domain.PrefixConversation), ProjectID: p.ID, ChatID: chat, CreatedAt: t0, UpdatedAt: t0}
			must(t, st.AppendTurn(ctx, c, true, []domain.Message{
				{ID: domain.NewID(domain.PrefixMessage), ConversationID: c.ID, Seq: 0, Role: domain.RoleUser, Content: "hi", CreatedAt: t0},
			}))
			return c.ID
		}
		kept, gone := provider(), provider()
		chatKept, chatGone := chat(kept), chat(gone)
		convGone, convOfChatGone := conversation(chatKept), conversation(chatGone)
		rs := []domain.UsageRecord{
			{ChatID: chatKept, ConversationID: convGone, AIProviderID: kept},       // its conversation deleted
			{ChatID: chatGone, ConversationID: convOfChatGone, AIProviderID: gone}, // its chat, and so conversation, then provider deleted
			{AIProviderID: gone}, // stateless, its provider deleted
		}
		for i := range rs {
			rs[i].ID, rs[i].ProjectID, rs[i].UserID, rs[i].KeyID = domain.NewID(domain.PrefixMessage), p.ID, u.ID, key.ID // the key revoked
			rs[i].Model, rs[i].Outcome, rs[i].CreatedAt = "m", domain.OutcomeOK, t0
			rs[i].Usage = domain.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}
		}
		counted := &insertCounter{Store: st}
		log := &logs{}
		b := domain.NewUsageBatcher(counted, slog.New(log), 100, time.Hour)
		for _, r := range rs {
			b.Record(ctx, r)
		}
		must(t, st.DeleteConversation(ctx, convGone))
		must(t, st.DeleteChat(ctx, chatGone))
		must(t, st.DeleteProvider(ctx, gone))
		if _, err := st.RevokeAPIKey(ctx, u.ID, key.ID, t0); err != nil {
			t.Fatal(err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got := counted.calls.Load(); got != 1 {
			t.Errorf("%d writes; want the batch written whole in 1\n%s", got, log)
		}
		log.mu.Lock()
		entries := slices.Clone(log.entries)
		log.mu.Unlock()
		for _, e := range entries {
			if e.level >= slog.LevelWarn {
				t.Errorf("logged %s %s %v; want no warning", e.level, e.msg, e.attrs)
			}
		}
		for _, c := range []struct {
			by   domain.UsageGroupBy
			want []string // key:requests
		}{
			{domain.GroupByChat, []string{":1", chatGone + ":1", chatKept + ":1"}},
			{domain.GroupByProvider, []string{gone + ":2", kept + ":1"}},
			{domain.GroupByKey, []string{key.ID + ":3"}},
		} {
			totals, err := st.SumUsage(ctx, domain.UsageQuery{ProjectID: p.ID, GroupBy: c.by, From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
			must(t, err)
			got := make([]string, len(totals))
			for i, tot := range totals {
				got[i] = fmt.Sprintf("%s:%d", tot.Key, tot.Requests)
			}
			slices.Sort(got)
			slices.Sort(c.want)
			if !slices.Equal(got, c.want) {
				t.Errorf("requests by %s: %v; want %v", c.by, got, c.want)
			}
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestUsageBatcherShutdownEndsTheWriteInFlight: Shutdown's context bounds
// a write the batcher began before Shutdown was called, not only those it
// begins after. A database that hangs (PostgreSQL behind a frozen network,
// SQLite locked by another process) used to hold Shutdown for the whole of
// that write's own timeout (30s; SQLite's busy timeout of 10s), however
// short the flush the server allowed.
func TestUsageBatcherShutdownEndsTheWriteInFlight(t *testing.T) {
	check := func(t *testing.T, st *store.Store, hang func()) {
		t.Helper()
		log := &logs{}
		b := domain.NewUsageBatcher(st, slog.New(log), 10, 10*time.Millisecond)
		hang()
		b.Record(context.Background(), domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: "prj_none", Outcome: domain.OutcomeOK, CreatedAt: time.Now()})
		time.Sleep(300 * time.Millisecond) // the interval is 10ms: the write has begun, and hangs
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := b.Shutdown(ctx)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Shutdown with a context of 500ms took %v", took.Round(time.Millisecond))
		}
		if got, want := domain.KindOf(err), domain.Unavailable; err == nil || got != want {
			t.Errorf("Shutdown: %v (%s); want %s", err, got, want)
		}
		if got, want := log.sum("usage records lost: not written before shutdown ended", "records"), int64(1); got != want {
			t.Errorf("logged %d records lost; want %d\n%s", got, want, log)
		}
	}
	t.Run("postgres hangs", func(t *testing.T) {
		st, p := dbtest.PostgresThroughProxy(t)
		check(t, st, p.Stall)
		p.Down() // let the pool's stalled connections go before the cleanup closes the store
	})
	t.Run("sqlite locked by another process", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "parley.db")
		st, err := store.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Migrate(context.Background(), "up", nil); err != nil {
			t.Fatal(err)
		}
		// Another process's write transaction, as TestThirdSignalExitsAtOnce holds one.
		other, err := store.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		db, err := other.DB().DB()
		if err != nil {
			t.Fatal(err)
		}
		lock, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		check(t, st, func() {
			if _, err := lock.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
				t.Fatal(err)
			}
		})
		_, _ = lock.ExecContext(context.Background(), "ROLLBACK")
	})
}

// TestUsageWaitingNeverDips: while writes fail, nothing is written or
// dropped (here fewer records than are kept), so the count of records
// waiting only grows, however its reads fall between the batcher moving
// records from its queue to those it keeps.
func TestUsageWaitingNeverDips(t *testing.T) {
	st := newFlakyStore(func(int, []domain.UsageRecord) (bool, error) { return false, unreachable() })
	b := domain.NewUsageBatcher(st, quiet(), 500, time.Millisecond)
	done := make(chan struct{})
	dips := make(chan string, 1)
	go func() {
		defer close(dips)
		var last int64
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := b.Waiting(); n < last {
				dips <- fmt.Sprintf("Waiting() went from %d to %d with nothing written or dropped", last, n)
				return
			} else {
				last = n
			}
		}
	}()
	for _, r := range records(20000, "p") {
		b.Record(context.Background(), r)
	}
	close(done)
	if dip, ok := <-dips; ok {
		t.Error(dip)
	}
	if got := b.Waiting(); got != 20000 {
		t.Errorf("Waiting() = %d after 20000 records and no write, want 20000", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_ = b.Shutdown(ctx) // cannot write: what it holds is lost, as the store is down
}
