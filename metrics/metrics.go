// Package metrics exposes Parley's Prometheus metrics: HTTP requests,
// completion latency and time to first token by provider, model and
// outcome, tokens, open streams and rate-limit rejections.
package metrics

import (
	"context"
	"database/sql"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleyhq/parley/domain"
)

// Metrics holds the collectors on a registry of its own, so tests can run
// several servers in one process.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	completions *prometheus.CounterVec
	compLatency *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	openStreams prometheus.Gauge
	rateLimited *prometheus.CounterVec
	toolCalls   *prometheus.CounterVec
	toolLatency *prometheus.HistogramVec
	retained    *prometheus.CounterVec
	retries     *prometheus.CounterVec

	// requestSeries caches ObserveRequest's children by requestKey:
	// WithLabelValues hashes and compares every label at each call. Its
	// labels are bounded (routes, methods and statuses).
	requestSeries sync.Map
}

type requestKey struct {
	route, method string
	status        int
}

type requestSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// Histogram buckets, in seconds. An API request that is not a completion
// takes well under a millisecond (Parley's added latency at p50 is below
// one: docs/benchmarks.md), so requestBuckets start at 100µs, where a
// first bucket of 5 ms would hold nearly every request; and a
// stream lasts as long as its reply, with no limit by default
// (PARLEY_MAX_STREAM_DURATION), so request and completion durations run to
// an hour.
var (
	requestBuckets    = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600}
	completionBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600}
	ttftBuckets       = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900}
)

// New registers Parley's collectors and the Go runtime's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_http_request_duration_seconds", Help: "HTTP request duration by route and method.", Buckets: requestBuckets,
		}, []string{"route", "method"}),
		completions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_completions_total", Help: "Completions by route, provider type, model, outcome and streaming.",
		}, []string{"route", "provider", "model", "outcome", "stream"}),
		compLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_completion_duration_seconds", Help: "Completion duration by route, provider, model and outcome.", Buckets: completionBuckets,
		}, []string{"route", "provider", "model", "outcome"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_completion_time_to_first_token_seconds", Help: "Time from the upstream call to a stream's first token, by route, provider, model and outcome.", Buckets: ttftBuckets,
		}, []string{"route", "provider", "model", "outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_tokens_total", Help: "Tokens by provider, model and kind (prompt, completion).",
		}, []string{"provider", "model", "kind"}),
		openStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_open_streams", Help: "Completion streams open now.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rate_limit_rejections_total", Help: "Requests refused by Parley's own limits, by limit.",
		}, []string{"limit"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_mcp_tool_calls_total", Help: "MCP tool calls by tool and outcome (ok, or the error code of a failed call's result).",
		}, []string{"tool", "outcome"}),
		toolLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_mcp_tool_call_duration_seconds", Help: "MCP tool call duration by tool.", Buckets: requestBuckets,
		}, []string{"tool"}),
		retained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_retention_deleted_total", Help: "Rows the retention sweeps deleted, by kind (usage_records, conversations).",
		}, []string{"kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_upstream_retries_total", Help: "Upstream attempts that failed and were tried again, by provider type and reason (status_5xx, connection, stream_fault).",
		}, []string{"provider", "reason"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.completions, m.compLatency, m.ttft, m.tokens, m.openStreams, m.rateLimited, m.toolCalls, m.toolLatency, m.retained, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Swept(domain.Swept{}) // served at 0 from the start, swept or not
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// UpstreamRetried counts an upstream attempt that failed and is tried
// again: provider is the provider's type, reason one of llm.Retry's.
func (m *Metrics) UpstreamRetried(provider, reason string) {
	m.retries.WithLabelValues(provider, reason).Inc()
}

// ObserveRequest records one HTTP request by its route pattern (never the
// raw path, which would carry ids).
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	k := requestKey{route, method, status}
	v, ok := m.requestSeries.Load(k)
	if !ok {
		v, _ = m.requestSeries.LoadOrStore(k, &requestSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			latency:  m.latency.WithLabelValues(route, method),
		})
	}
	s := v.(*requestSeries)
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}

// ToolCalled records one MCP tool call: its tool (one of those registered;
// mcp-go refuses any other name before a handler runs), its outcome ("ok",
// or the error code its result starts with, "internal" for a protocol
// error) and its duration. Every MCP answer is an HTTP 200, so this is
// where a tool's failures show.
func (m *Metrics) ToolCalled(tool, outcome string, d time.Duration) {
	m.toolCalls.WithLabelValues(tool, outcome).Inc()
	m.toolLatency.WithLabelValues(tool).Observe(d.Seconds())
}

// CountUsageDropped exports dropped, the usage records lost so far (the
// usage batcher's count), as parley_usage_records_dropped_total: records
// are dropped, with a warning, when the database refuses them or stays
// down past what the batcher keeps.
func (m *Metrics) CountUsageDropped(dropped func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "parley_usage_records_dropped_total", Help: "Usage records lost: refused by the database, or beyond what is kept while writes fail.",
	}, func() float64 { return float64(dropped()) }))
}

// CountUsageWaiting exports waiting, the usage records not written yet
// (the usage batcher's), as parley_usage_records_waiting: near zero while
// the database takes them, rising while it refuses them, until the
// oldest are dropped.
func (m *Metrics) CountUsageWaiting(waiting func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_usage_records_waiting", Help: "Usage records not written yet: queued, or kept while writes fail.",
	}, func() float64 { return float64(waiting()) }))
}

// CountLimiterFailedOpen exports failedOpen, the rate limiter's calls to
// Redis that failed or were skipped while it failed (an admission among
// them let a request in without limits; a count or a release went
// uncounted), as parley_rate_limiter_failed_open_total.
func (m *Metrics) CountLimiterFailedOpen(failedOpen func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "parley_rate_limiter_failed_open_total", Help: "Rate limiter calls to Redis that failed or were skipped while it failed: admissions without limits, counts and releases lost.",
	}, func() float64 { return float64(failedOpen()) }))
}

// CountDatabase exports db's pool statistics (go_sql_*, db_name
// "parley"): connections open, in use and idle, and the waits for one,
// which tell a database that is slow from a pool that is full.
func (m *Metrics) CountDatabase(db *sql.DB) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, "parley"))
}

// Swept counts what a retention sweep deleted.
func (m *Metrics) Swept(s domain.Swept) {
	m.retained.WithLabelValues("usage_records").Add(float64(s.UsageRecords))
	m.retained.WithLabelValues("conversations").Add(float64(s.Conversations))
}

// StreamOpened and StreamClosed track open completion streams.
func (m *Metrics) StreamOpened() { m.openStreams.Inc() }
func (m *Metrics) StreamClosed() { m.openStreams.Dec() }

// Limiter returns a domain.Limiter that counts every refusal of next by
// the limit's name, whichever API the request came through.
func (m *Metrics) Limiter(next domain.Limiter) domain.Limiter {
	return limiter{m: m, Limiter: next}
}

type limiter struct {
	m *Metrics
	domain.Limiter
}

func (l limiter) Allow(ctx context.Context, budgets []domain.Budget, reserve int) ([]domain.Quota, domain.Reservation, error) {
	quotas, r, err := l.Limiter.Allow(ctx, budgets, reserve)
	return quotas, r, l.count(err)
}

func (l limiter) Acquire(ctx context.Context, s domain.Slots) (func(), domain.Quota, error) {
	release, q, err := l.Limiter.Acquire(ctx, s)
	return release, q, l.count(err)
}

// count counts err when it is a refusal that names its limit.
func (l limiter) count(err error) error {
	if q, ok := domain.RefusedQuota(err); ok {
		l.m.rateLimited.WithLabelValues(q.Name).Inc()
	}
	return err
}

// Recorder returns a domain.UsageRecorder that observes every completion
// and hands the record on to next.
func (m *Metrics) Recorder(next domain.UsageRecorder) domain.UsageRecorder {
	return &recorder{m: m, next: next, models: map[string]bool{}, answeredAs: map[string]string{}, series: map[completionKey]*completionSeries{}}
}

// maxModels bounds the model label: callers choose model names, and each
// new one would be a new time series.
const maxModels = 200

type recorder struct {
	m      *Metrics
	next   domain.UsageRecorder
	mu     sync.Mutex
	models map[string]bool
	// answeredAs is the label of the name a model asked for last answered
	// as, where the two differ (OpenAI's gpt-4o answers as a dated
	// version), so that its failures, which bear only the name asked for,
	// count under the same label as its successes.
	answeredAs map[string]string
	// series caches Record's children by their labels (bounded by
	// maxModels), as requestSeries does.
	series map[completionKey]*completionSeries
}

type completionKey struct {
	route, provider, model, outcome string
	stream                          bool
}

type completionSeries struct {
	completions, prompt, completion prometheus.Counter
	latency                         prometheus.Observer
	ttft                            prometheus.Observer // made by the first stream to observe it, as before
}

// seriesOf returns the children of k's labels.
func (r *recorder) seriesOf(k completionKey) *completionSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[k]
	if s == nil {
		s = &completionSeries{
			completions: r.m.completions.WithLabelValues(k.route, k.provider, k.model, k.outcome, strconv.FormatBool(k.stream)),
			latency:     r.m.compLatency.WithLabelValues(k.route, k.provider, k.model, k.outcome),
			prompt:      r.m.tokens.WithLabelValues(k.provider, k.model, "prompt"),
			completion:  r.m.tokens.WithLabelValues(k.provider, k.model, "completion"),
		}
		r.series[k] = s
	}
	return s
}

// ttftOf returns s's time-to-first-token child, making it the first time.
func (r *recorder) ttftOf(s *completionSeries, k completionKey) prometheus.Observer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.ttft == nil {
		s.ttft = r.m.ttft.WithLabelValues(k.route, k.provider, k.model, k.outcome)
	}
	return s.ttft
}

// model is the label of a completion's model: its name once a completion
// of it succeeded, so a name the provider answered with, else "other". A
// name the provider refused takes no label: the caller chooses it, and
// could otherwise use up maxModels with names that never ran, leaving
// the models in use to count as "other" until a restart. (The domain takes
// no name the provider answers with that is longer than the API's.) A
// failure of a name that answered under another counts under that one.
func (r *recorder) model(rec domain.UsageRecord) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := rec.Model
	if !utf8.ValidString(name) {
		// The domain makes a provider's model valid UTF-8; a label that
		// is not would make Prometheus's client panic, every call after.
		return "other"
	}
	if r.models[name] {
		return r.remember(rec.RequestedModel, name)
	}
	if rec.Outcome != domain.OutcomeOK {
		if label, ok := r.answeredAs[name]; ok {
			return label
		}
		return "other"
	}
	if len(r.models) >= maxModels {
		return "other"
	}
	r.models[name] = true
	return r.remember(rec.RequestedModel, name)
}

// remember notes that the model asked for answered as label, when it did
// and had another name, within maxModels such names.
func (r *recorder) remember(asked, label string) string {
	if asked == "" || asked == label {
		return label
	}
	if _, ok := r.answeredAs[asked]; ok || len(r.answeredAs) < maxModels {
		r.answeredAs[asked] = label
	}
	return label
}

// completionRoute is the route label of a completion: the pattern of its
// REST endpoint, per chat or stateless, which the HTTP metrics' route
// label names too. An MCP completion tool, and a REST completion made at
// OpenAI's path (rest/openai.go), count under the same one; the HTTP
// metrics label the latter's requests with that path.
func completionRoute(rec domain.UsageRecord) string {
	if rec.ChatID != "" {
		return "/api/v1/chats/:chatId/completions"
	}
	return "/api/v1/chats/completions"
}

func (r *recorder) Record(ctx context.Context, rec domain.UsageRecord) {
	k := completionKey{completionRoute(rec), string(rec.ProviderType), r.model(rec), string(rec.Outcome), rec.Stream}
	s := r.seriesOf(k)
	s.completions.Inc()
	s.latency.Observe(rec.Latency.Seconds())
	// Only a stream's first byte is its first token: a whole reply's comes
	// once the reply is written, and would read as a slow first token.
	if rec.Stream && rec.TimeToFirst > 0 {
		r.ttftOf(s, k).Observe(rec.TimeToFirst.Seconds())
	}
	s.prompt.Add(float64(rec.Usage.PromptTokens))
	s.completion.Add(float64(rec.Usage.CompletionTokens))
	r.next.Record(ctx, rec)
}
