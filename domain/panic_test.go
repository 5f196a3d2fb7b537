package domain_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/ratelimit"
	"github.com/parleyhq/parley/secret"
)

// panickingLLM passes one delta on, then panics, as an adapter or SDK
// with a fault would: nothing else can make the call upstream panic.
type panickingLLM struct{}

func (panickingLLM) Complete(_ context.Context, _ domain.LLMRequest, onDelta func(domain.Delta) error) (*domain.LLMResult, error) {
	if onDelta != nil {
		_ = onDelta(domain.Delta{Content: "half a reply"})
	}
	panic("a fault in an adapter")
}
func (panickingLLM) Check(domain.LLMRequest) error { return nil }
func (panickingLLM) Models(context.Context, domain.Endpoint) ([]domain.Model, error) {
	return nil, nil
}

type recorded struct {
	mu   sync.Mutex
	recs []domain.UsageRecord
}

func (r *recorded) Record(_ context.Context, rec domain.UsageRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

type discardEmitter struct{}

func (discardEmitter) Admitted([]domain.Quota)           {}
func (discardEmitter) Start(domain.CompletionMeta) error { return nil }
func (discardEmitter) Delta(domain.Delta) error          { return nil }

// TestPanicUpstreamRecordsUsage: a completion whose call upstream
// panicked after its first delta (REST and MCP recover the panic as a
// 500) is recorded, outcome error, its tokens estimated, and the panic
// goes on to the caller.
func TestPanicUpstreamRecordsUsage(t *testing.T) {
	usage := &recorded{}
	svcs, ctx, _, prov, _ := panicWorld(t, domain.Deps{Store: dbtest.SQLite(t), LLM: panickingLLM{}, Usage: usage})
	hi := "hi"
	recovered := recoverFrom(func() {
		_, _ = svcs.Completions.Stateless(ctx, domain.StatelessCompletion{AIProviderID: prov.ID,
			CompletionParams: domain.CompletionParams{Messages: []domain.InputMessage{{Role: domain.RoleUser, Content: &hi}}}}, discardEmitter{})
	})
	if recovered != "a fault in an adapter" {
		t.Errorf("recovered %v, want the panic passed on", recovered)
	}
	if len(usage.recs) != 1 {
		t.Fatalf("%d usage records, want 1", len(usage.recs))
	}
	if r := usage.recs[0]; r.Outcome != domain.OutcomeError || r.Usage.PromptTokens <= 0 || r.Usage.CompletionTokens <= 0 || !r.Usage.Estimated {
		t.Errorf("record %+v, want outcome error with its tokens estimated", r)
	}
}

// answeringLLM answers every call at once.
type answeringLLM struct{}

func (answeringLLM) Complete(context.Context, domain.LLMRequest, func(domain.Delta) error) (*domain.LLMResult, error) {
	return &domain.LLMResult{Content: "ok", FinishReason: "stop", Model: "m", Usage: domain.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}}, nil
}
func (answeringLLM) Check(domain.LLMRequest) error { return nil }
func (answeringLLM) Models(context.Context, domain.Endpoint) ([]domain.Model, error) {
	return nil, nil
}

// panickingStore panics in GetProvider while armed: a fault reached in
// planning, after the conversation and the idempotency key were claimed.
type panickingStore struct {
	domain.Store
	armed atomic.Bool
}

func (s *panickingStore) GetProvider(ctx context.Context, id string) (*domain.AIProvider, error) {
	if s.armed.Load() {
		panic("a fault in the store")
	}
	return s.Store.GetProvider(ctx, id)
}

// panickingLimiter panics in Allow while armed, after the stream slots
// were taken.
type panickingLimiter struct {
	domain.Limiter
	armed atomic.Bool
}

func (l *panickingLimiter) Allow(ctx context.Context, b []domain.Budget, reserve int) ([]domain.Quota, domain.Reservation, error) {
	if l.armed.Load() {
		panic("a fault in the limiter")
	}
	return l.Limiter.Allow(ctx, b, reserve)
}

// panicWorld is services over deps (an answering LLM and a discarding
// usage recorder where it names none), with a project, its provider and a
// chat, and the local admin's context.
func panicWorld(t *testing.T, deps domain.Deps) (*domain.Services, context.Context, *domain.Project, *domain.AIProvider, *domain.Chat) {
	t.Helper()
	authz, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	deps.Authz, deps.Sealer, deps.AllowPrivateUpstreams = authz, kr, true
	deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if deps.LLM == nil {
		deps.LLM = answeringLLM{}
	}
	if deps.Usage == nil {
		deps.Usage = &recorded{}
	}
	svcs := domain.NewServices(deps)
	admin, err := svcs.Users.LocalAdmin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx := domain.WithPrincipal(context.Background(), admin)
	p, err := svcs.Projects.Create(ctx, domain.ProjectCreate{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := svcs.Providers.Create(ctx, domain.ProviderCreate{ProjectID: p.ID, Name: "fake", Type: domain.ProviderOpenAICompatible,
		BaseURL: "http://127.0.0.1:1/v1", DefaultModel: "m", APIKey: "sk-test-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	chat, err := svcs.Chats.Create(ctx, domain.ChatCreate{ProjectID: p.ID, AIProviderID: prov.ID, Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return svcs, ctx, p, prov, chat
}

// recoverFrom runs f and returns what it panicked with.
func recoverFrom(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// TestPanicInPlanningReleasesClaims: a completion that panics while it is
// planned (REST and MCP recover it as a 500) gives back its claims on the
// conversation and on its idempotency key: the client's retry, and the
// conversation's next turn, run rather than answer 409 until a restart.
func TestPanicInPlanningReleasesClaims(t *testing.T) {
	st := &panickingStore{Store: dbtest.SQLite(t)}
	svcs, ctx, _, _, chat := panicWorld(t, domain.Deps{Store: st})
	hi := "hi"
	params := domain.CompletionParams{Messages: []domain.InputMessage{{Role: domain.RoleUser, Content: &hi}}}
	first, err := svcs.Completions.ForChat(ctx, domain.ChatCompletion{ChatID: chat.ID, CompletionParams: params}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := domain.ChatCompletion{ChatID: chat.ID, ConversationID: first.ConversationID, IdempotencyKey: "k-1", CompletionParams: params}
	st.armed.Store(true)
	if r := recoverFrom(func() { _, _ = svcs.Completions.ForChat(ctx, in, nil) }); r != "a fault in the store" {
		t.Fatalf("recovered %v, want the store's panic", r)
	}
	st.armed.Store(false)
	if _, err := svcs.Completions.ForChat(ctx, in, nil); err != nil {
		t.Errorf("the retry with the same key after the panic: %v", err)
	}
	in.IdempotencyKey = ""
	if _, err := svcs.Completions.ForChat(ctx, in, nil); err != nil {
		t.Errorf("the conversation's next turn after the panic: %v", err)
	}
}

// TestPanicInAdmissionReleasesSlots: a stream whose admission panics
// after it took the project's one stream slot gives the slot back.
func TestPanicInAdmissionReleasesSlots(t *testing.T) {
	lim := &panickingLimiter{Limiter: ratelimit.NewMemory()}
	svcs, ctx, p, prov, _ := panicWorld(t, domain.Deps{Store: dbtest.SQLite(t), Limiter: lim})
	if _, err := svcs.Limits.Put(ctx, p.ID, domain.LimitsUpdate{LimitValues: domain.LimitValues{RequestsPerMinute: 1000, ConcurrentStreams: 1}}); err != nil {
		t.Fatal(err)
	}
	hi := "hi"
	in := domain.StatelessCompletion{AIProviderID: prov.ID, CompletionParams: domain.CompletionParams{Messages: []domain.InputMessage{{Role: domain.RoleUser, Content: &hi}}}}
	lim.armed.Store(true)
	if r := recoverFrom(func() { _, _ = svcs.Completions.Stateless(ctx, in, discardEmitter{}) }); r != "a fault in the limiter" {
		t.Fatalf("recovered %v, want the limiter's panic", r)
	}
	lim.armed.Store(false)
	if _, err := svcs.Completions.Stateless(ctx, in, discardEmitter{}); err != nil {
		t.Errorf("the next stream after the panic: %v", err)
	}
}
