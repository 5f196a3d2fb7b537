package domain_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policy"
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
	authz, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	usage := &recorded{}
	svcs := domain.NewServices(domain.Deps{Store: dbtest.SQLite(t), Authz: authz, Sealer: kr, LLM: panickingLLM{}, Usage: usage,
		AllowPrivateUpstreams: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	hi := "hi"
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		_, _ = svcs.Completions.Stateless(ctx, domain.StatelessCompletion{AIProviderID: prov.ID,
			CompletionParams: domain.CompletionParams{Messages: []domain.InputMessage{{Role: domain.RoleUser, Content: &hi}}}}, discardEmitter{})
	}()
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
