package domain

import (
	"context"
	"math"
	"sync"
	"time"
)

// ProjectLimits are the rate limits a project's owner sets; 0 means no limit.
// Per-key limits apply to each API key's use of the project.
type ProjectLimits struct {
	ProjectID               string
	RequestsPerMinute       int // completions per minute, the whole project
	TokensPerMinute         int // tokens per minute, the whole project
	KeyRequestsPerMinute    int // completions per minute, each API key
	KeyTokensPerMinute      int // tokens per minute, each API key
	ConcurrentStreams       int // open completion streams, the whole project
	ConcurrentStreamsPerKey int // open completion streams, each API key
	UpdatedAt               time.Time
}

// LimitStore keeps project limits.
type LimitStore interface {
	// GetLimits returns the project's limits; all zero when none were set.
	GetLimits(ctx context.Context, projectID string) (*ProjectLimits, error)
	// PutLimits saves l, replacing what was there; NotFound when the
	// project does not exist.
	PutLimits(ctx context.Context, l *ProjectLimits) error
}

// Budget is one rate-limited subject: a request counter and a token
// counter over a one-minute window.
type Budget struct {
	Key               string // e.g. "prj_…" or "prj_…/key_…"
	Name              string // the limit, for errors and metrics: "project" or "key"
	RequestsPerMinute int
	TokensPerMinute   int
}

// Quota is what is left of one limit that admitted a request, as the
// limiter counted it when it did: the RateLimit-* headers of a completion.
type Quota struct {
	// Name names the limit as a refusal's Details["limitName"] does:
	// "project-requests-per-minute", "key-tokens-per-minute",
	// "key-concurrent-streams", ...
	Name  string
	Limit int
	// Remaining is what the limit has left once this request is counted:
	// requests and open streams with this one, tokens with its
	// reservation (what it will use is counted only when it ends:
	// AddTokens).
	Remaining int
	// Reset is the time until the window ends, as of At. Open streams have
	// no window (Window is 0): a slot frees when a stream ends, and Reset
	// is 1s, as in their refusal.
	Reset  time.Duration
	Window time.Duration
	At     time.Time // when the request was admitted; zero: just now
}

// As is q as of now, for a response sent a while after its request was
// admitted (a completion's reply comes seconds or minutes later): Reset
// counts from now, and a window that has ended since is followed by the
// one now under way, of which the limiter had counted nothing when it
// admitted the request (Remaining is Limit; the request itself was
// counted in the window before).
func (q Quota) As(now time.Time) Quota {
	if q.Window <= 0 || q.At.IsZero() {
		return q
	}
	left := q.Reset - now.Sub(q.At)
	if left <= 0 {
		left += (-left/q.Window + 1) * q.Window
		q.Remaining = q.Limit
	}
	q.Reset, q.At = left, now
	return q
}

// RefusalDetails are the Details of a refusal by the limit q, as the error
// envelope shows them: limit, limitName, remaining, resetSeconds (whole,
// at least 1) and, for a per-minute limit, windowSeconds. RefusedQuota
// reads them back.
func RefusalDetails(q Quota) map[string]any {
	d := map[string]any{"limit": q.Limit, "limitName": q.Name, "remaining": q.Remaining,
		"resetSeconds": max(int((q.Reset+time.Second-1)/time.Second), 1)}
	if q.Window > 0 {
		d["windowSeconds"] = int(q.Window / time.Second)
	}
	return d
}

// RefusedQuota is the limit err, a refusal by one of Parley's limits,
// names in its Details (RefusalDetails), with Reset in whole seconds; ok
// is false for any other error, a provider's 429 among them.
func RefusedQuota(err error) (q Quota, ok bool) {
	d := DetailsOf(err)
	if q.Name, ok = d["limitName"].(string); !ok {
		return Quota{}, false
	}
	q.Limit, _ = d["limit"].(int)
	q.Remaining, _ = d["remaining"].(int)
	secs, _ := d["resetSeconds"].(int)
	window, _ := d["windowSeconds"].(int)
	q.Reset, q.Window = time.Duration(secs)*time.Second, time.Duration(window)*time.Second
	return q, true
}

// Limiter counts requests, tokens and open streams. The ratelimit package
// implements it in memory (one instance) and on Redis (shared).
type Limiter interface {
	// Allow counts one request against every budget with a request limit
	// and reserves reserve tokens (the request's estimate, see
	// Reservation) against every budget with a token limit. It refuses
	// when a budget's requests this window are at their limit, or its
	// tokens are, or would pass it with the reservation (a budget with no
	// tokens counted yet admits any reservation, or a request larger
	// than the limit could never run). Refusals are RateLimited errors
	// with RetryAfter and the Details of the Quota refused
	// (RefusalDetails); nothing is counted when any budget refuses. An
	// allowed request gets the Quota of each limit it was checked
	// against: in the budgets' order, each budget's requests (when
	// limited), then its tokens (when limited); none when nothing was
	// checked: no budget has a limit, or the limiter failed open (and
	// then a zero Reservation).
	Allow(ctx context.Context, budgets []Budget, reserve int) ([]Quota, Reservation, error)
	// AddTokens counts the tokens a request admitted with r used against
	// every budget with a token limit, less what r reserved of it: the
	// difference, more or less, in r's window while it lasts; once it has
	// ended, what was used beyond the reservation, in the window now.
	AddTokens(ctx context.Context, budgets []Budget, tokens int, r Reservation)
	// Acquire takes one of s's slots; RateLimited when none is free.
	// release gives it back. q is what is left of the slots once this one
	// is taken ("key-concurrent-streams"); zero (Limit 0) when s.Max <= 0
	// or the limiter failed open.
	Acquire(ctx context.Context, s Slots) (release func(), q Quota, err error)
}

// Reservation is what Allow reserved for an admitted request: Tokens (of
// each budget with a token limit, at most that limit: Reserved) counted in
// the limiter's window Window (a unix minute), so that completions admitted
// together cannot all run past a tokens-per-minute limit before any has
// ended. The zero Reservation reserved nothing.
type Reservation struct {
	Tokens int
	Window int64
}

// Reserved is what r reserved of b's tokens.
func (r Reservation) Reserved(b Budget) int {
	if b.TokensPerMinute <= 0 {
		return 0
	}
	return min(r.Tokens, b.TokensPerMinute)
}

// Slots is a limit of open streams: at most Max at once under Key. Name
// names the limit as a Budget's does ("project" or "key"): its quota is
// Name+"-concurrent-streams".
type Slots struct {
	Key  string // e.g. "streams/prj_…" or "streams/prj_…/key_…"
	Name string
	Max  int
}

// Limits reads and sets project limits (owner), with a cache that its own
// writes invalidate and that expires for writes of other instances.
type Limits struct {
	store  LimitStore
	access access
	now    func() time.Time
	ttl    time.Duration

	mu    sync.Mutex
	cache map[string]cachedLimits
	gen   uint64 // counts writes, so that a read they overtook caches nothing
	sweep int    // the cache's size at which expired entries are dropped
}

// minLimitsSweep is the smallest cache size at which lookup drops expired
// entries: a project deleted, or idle, keeps none for long.
const minLimitsSweep = 1024

type cachedLimits struct {
	l  ProjectLimits
	at time.Time
}

// maxLimit is the largest limit: the columns that keep limits hold 32
// bits, on either engine the same.
const maxLimit = math.MaxInt32

// LimitsUpdate is the input of Limits.Put.
type LimitsUpdate struct {
	// ProjectID, when set (a body a GET gave, sent back), must be the
	// project whose limits are put.
	ProjectID string
	LimitValues
}

// LimitValues are a project's limits as a client sets them; 0 is none.
type LimitValues struct {
	RequestsPerMinute       int
	TokensPerMinute         int
	KeyRequestsPerMinute    int
	KeyTokensPerMinute      int
	ConcurrentStreams       int
	ConcurrentStreamsPerKey int
}

// Get returns a project's limits.
func (s *Limits) Get(ctx context.Context, projectID string) (*ProjectLimits, error) {
	if err := s.access.checkProject(ctx, projectID, PermGetProject); err != nil {
		return nil, err
	}
	return s.lookup(ctx, projectID)
}

// Put sets a project's limits (owner). Limits as they are keep their
// updatedAt, as an update that changes nothing does elsewhere.
func (s *Limits) Put(ctx context.Context, projectID string, in LimitsUpdate) (*ProjectLimits, error) {
	if err := s.access.checkProject(ctx, projectID, PermSetLimits); err != nil {
		return nil, err
	}
	if in.ProjectID != "" && in.ProjectID != projectID {
		return nil, Invalidf("projectId", "projectId must be the project in the path (%s), or be left out", projectID)
	}
	for _, f := range []struct {
		name  string
		value int
	}{
		{"requestsPerMinute", in.RequestsPerMinute}, {"tokensPerMinute", in.TokensPerMinute},
		{"keyRequestsPerMinute", in.KeyRequestsPerMinute}, {"keyTokensPerMinute", in.KeyTokensPerMinute},
		{"concurrentStreams", in.ConcurrentStreams}, {"concurrentStreamsPerKey", in.ConcurrentStreamsPerKey},
	} {
		if f.value < 0 || f.value > maxLimit {
			return nil, Invalidf(f.name, "%s must be 0 (no limit) or a positive integer up to %d", f.name, maxLimit)
		}
	}
	l := &ProjectLimits{
		ProjectID: projectID, RequestsPerMinute: in.RequestsPerMinute, TokensPerMinute: in.TokensPerMinute,
		KeyRequestsPerMinute: in.KeyRequestsPerMinute, KeyTokensPerMinute: in.KeyTokensPerMinute,
		ConcurrentStreams: in.ConcurrentStreams, ConcurrentStreamsPerKey: in.ConcurrentStreamsPerKey,
	}
	was, err := s.store.GetLimits(ctx, projectID)
	if err != nil {
		return nil, Wrap("limits.Put", err)
	}
	if l.UpdatedAt = was.UpdatedAt; *l == *was && !was.UpdatedAt.IsZero() {
		return was, nil
	}
	l.UpdatedAt = s.now()
	if err := s.store.PutLimits(ctx, l); err != nil {
		return nil, Wrap("limits.Put", err)
	}
	s.mu.Lock()
	delete(s.cache, projectID)
	s.gen++
	s.mu.Unlock()
	return l, nil
}

// lookup returns the limits of projectID, cached for ttl. What it read is
// not cached when a Put on this instance came meanwhile: the read may
// predate that write, whose limits must apply at once.
func (s *Limits) lookup(ctx context.Context, projectID string) (*ProjectLimits, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[projectID]
	gen := s.gen
	s.mu.Unlock()
	if ok && now.Sub(c.at) < s.ttl {
		l := c.l
		return &l, nil
	}
	l, err := s.store.GetLimits(ctx, projectID)
	if err != nil {
		return nil, Wrap("limits.lookup", err)
	}
	s.mu.Lock()
	if s.gen == gen {
		if s.cache == nil {
			s.cache = map[string]cachedLimits{}
		}
		if len(s.cache) >= max(s.sweep, minLimitsSweep) {
			for id, c := range s.cache {
				if now.Sub(c.at) >= s.ttl {
					delete(s.cache, id)
				}
			}
			s.sweep = 2 * len(s.cache) // so that sweeps cost O(1) per insert
		}
		s.cache[projectID] = cachedLimits{l: *l, at: now}
	}
	s.mu.Unlock()
	return l, nil
}

// streamSlots returns the limits of open streams a stream in l's project
// by p takes a slot of: the project's, then p's key's.
func streamSlots(l *ProjectLimits, p Principal) []Slots {
	var out []Slots
	if l.ConcurrentStreams > 0 {
		out = append(out, Slots{Key: "streams/" + l.ProjectID, Name: "project", Max: l.ConcurrentStreams})
	}
	if p.KeyID != "" && l.ConcurrentStreamsPerKey > 0 {
		out = append(out, Slots{Key: "streams/" + l.ProjectID + "/" + p.KeyID, Name: "key", Max: l.ConcurrentStreamsPerKey})
	}
	return out
}

// budgets returns the budgets a completion in projectID by p counts against.
func budgets(l *ProjectLimits, p Principal) []Budget {
	var out []Budget
	if l.RequestsPerMinute > 0 || l.TokensPerMinute > 0 {
		out = append(out, Budget{Key: l.ProjectID, Name: "project", RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute})
	}
	if p.KeyID != "" && (l.KeyRequestsPerMinute > 0 || l.KeyTokensPerMinute > 0) {
		out = append(out, Budget{Key: l.ProjectID + "/" + p.KeyID, Name: "key", RequestsPerMinute: l.KeyRequestsPerMinute, TokensPerMinute: l.KeyTokensPerMinute})
	}
	return out
}
