package metrics

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/parleyhq/parley/domain"
)

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, domain.UsageRecord) {}

// oldRecord is Record before its children were cached.
func oldRecord(r *recorder, rec domain.UsageRecord) {
	route, provider, outcome := completionRoute(rec), string(rec.ProviderType), string(rec.Outcome)
	model := r.model(rec)
	r.m.completions.WithLabelValues(route, provider, model, outcome, strconv.FormatBool(rec.Stream)).Inc()
	r.m.compLatency.WithLabelValues(route, provider, model, outcome).Observe(rec.Latency.Seconds())
	if rec.Stream && rec.TimeToFirst > 0 {
		r.m.ttft.WithLabelValues(route, provider, model, outcome).Observe(rec.TimeToFirst.Seconds())
	}
	r.m.tokens.WithLabelValues(provider, model, "prompt").Add(float64(rec.Usage.PromptTokens))
	r.m.tokens.WithLabelValues(provider, model, "completion").Add(float64(rec.Usage.CompletionTokens))
}

func exposition(t *testing.T, m *Metrics) string {
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "parley_") {
			if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b.String()
}

// TestCachedSeriesAsBefore: Record and ObserveRequest leave the metrics
// as WithLabelValues at every call did.
func TestCachedSeriesAsBefore(t *testing.T) {
	a, b := New(), New()
	ra, rb := a.Recorder(nopRecorder{}).(*recorder), b.Recorder(nopRecorder{}).(*recorder)
	rnd := rand.New(rand.NewPCG(5, 6))
	outcomes := []domain.Outcome{domain.OutcomeOK, "upstream_error", "canceled"}
	for i := range 20000 {
		rec := domain.UsageRecord{
			Model: "m" + strconv.Itoa(rnd.IntN(260)), RequestedModel: "r" + strconv.Itoa(rnd.IntN(5)), Outcome: outcomes[rnd.IntN(len(outcomes))],
			ProviderType: domain.ProviderType([]string{"openai", "anthropic"}[rnd.IntN(2)]), Stream: rnd.IntN(2) == 0,
			Latency: time.Duration(rnd.IntN(1e9)), TimeToFirst: time.Duration(rnd.IntN(3)) * time.Millisecond,
			Usage: domain.Usage{PromptTokens: rnd.IntN(100), CompletionTokens: rnd.IntN(100)},
		}
		if rnd.IntN(2) == 0 {
			rec.ChatID = "cht_x"
		}
		if i%997 == 0 {
			rec.Model = "bad\xff"
		}
		oldRecord(ra, rec)
		rb.Record(context.Background(), rec)
		route, method, status, d := []string{"/a", "/b/:id", "unmatched"}[rnd.IntN(3)], []string{"GET", "POST"}[rnd.IntN(2)], 200+rnd.IntN(4)*100, time.Duration(rnd.IntN(1e7))
		a.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		a.latency.WithLabelValues(route, method).Observe(d.Seconds())
		b.ObserveRequest(route, method, status, d)
	}
	if ea, eb := exposition(t, a), exposition(t, b); ea != eb {
		t.Fatalf("the metrics differ:\n%s\n----\n%s", ea[:min(len(ea), 3000)], eb[:min(len(eb), 3000)])
	}
}
