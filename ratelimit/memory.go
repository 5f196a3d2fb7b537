package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/parleyhq/parley/domain"
)

// Memory is a domain.Limiter for one instance: counters live in the
// process, so each instance of a deployment has limits of its own.
type Memory struct {
	// Now is the clock; nil means time.Now. Set it before first use.
	Now func() time.Time

	mu      sync.Mutex
	windows map[int64]map[string]*usage // unix minute → budget key → usage
	streams map[string]int              // key → open slots
}

// usage is a budget's counts in a window: requests, tokens (used, and
// reserved for completions still running), the reservations outstanding,
// and the tokens it carried into the windows after (debt).
type usage struct{ requests, tokens, reserved, carried int }

var _ domain.Limiter = (*Memory)(nil)

// NewMemory returns an empty in-memory limiter.
func NewMemory() *Memory {
	return &Memory{windows: map[int64]map[string]*usage{}, streams: map[string]int{}}
}

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// current returns the usage map of window w, creating it; m.mu is held.
func (m *Memory) current(w int64) map[string]*usage {
	if m.windows == nil {
		m.windows = map[int64]map[string]*usage{}
	}
	cur := m.windows[w]
	if cur == nil {
		cur = map[string]*usage{}
		m.windows[w] = cur
	}
	return cur
}

// Allow implements domain.Limiter. All budgets are checked, then the
// request is counted against each budget with a request limit, and its
// reservation against each with a token limit, under one lock: a refused
// request counts nowhere.
func (m *Memory) Allow(_ context.Context, budgets []domain.Budget, reserve int) ([]domain.Quota, domain.Reservation, error) {
	if !limited(budgets) {
		return nil, domain.Reservation{}, nil
	}
	w, left := window(m.now())
	m.mu.Lock()
	defer m.mu.Unlock()
	for old := range m.windows { // drop windows older than the previous one (later ones hold debt)
		if old < w-1 {
			delete(m.windows, old)
		}
	}
	cur := m.current(w)
	for _, b := range budgets {
		u := cur[b.Key]
		if u == nil {
			continue
		}
		if b.RequestsPerMinute > 0 && u.requests >= b.RequestsPerMinute {
			return nil, domain.Reservation{}, refusal(b, false, left)
		}
		if b.TokensPerMinute > 0 && full(u.tokens, b.TokensPerMinute, reserve) {
			return nil, domain.Reservation{}, latestPastDebt(b, budgets, left, reserve, func(b domain.Budget, k int) int {
				if u := m.windows[w+int64(k)][b.Key]; u != nil {
					return u.tokens
				}
				return 0
			})
		}
	}
	r := domain.Reservation{Tokens: max(reserve, 0), Window: w}
	for _, b := range budgets {
		if b.RequestsPerMinute > 0 {
			m.usage(cur, b.Key).requests++
		}
		if n := r.Reserved(b); n > 0 {
			u := m.usage(cur, b.Key)
			u.tokens += n
			u.reserved += n
		}
	}
	quotas := make([]domain.Quota, 0, 2*len(budgets))
	for _, b := range budgets {
		var u usage
		if cu := cur[b.Key]; cu != nil {
			u = *cu
		}
		quotas = appendQuotas(quotas, b, u.requests, u.tokens, left)
	}
	return quotas, r, nil
}

// AddTokens implements domain.Limiter: it counts tokens, less r's
// reservation (settle), against each budget with a token limit, and what
// goes past the limit in the windows after (debt).
func (m *Memory) AddTokens(_ context.Context, budgets []domain.Budget, tokens int, r domain.Reservation) {
	if len(budgets) == 0 {
		return
	}
	w, _ := window(m.now())
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range budgets {
		for _, s := range settle(b, tokens, r, w) {
			cur := m.windows[s.w]
			if cur == nil && s.release != 0 {
				continue // the reservation's window is dropped, and with it the reservation
			}
			u := m.usage(m.current(s.w), b.Key)
			u.tokens += s.add
			u.reserved -= s.release
			over := excess(u.tokens, u.reserved, u.carried, b.TokensPerMinute)
			u.carried += over
			for k, a := range debt(over, b.TokensPerMinute) {
				m.usage(m.current(s.w+1+int64(k)), b.Key).tokens += a
			}
		}
	}
}

// usage returns the usage of key in window cur, creating it; m.mu is held.
func (m *Memory) usage(cur map[string]*usage, key string) *usage {
	u := cur[key]
	if u == nil {
		u = &usage{}
		cur[key] = u
	}
	return u
}

// Acquire implements domain.Limiter. s.Max <= 0 means no limit; release is
// then a no-op, and there is no quota. Calling release more than once is
// harmless.
func (m *Memory) Acquire(_ context.Context, s domain.Slots) (func(), domain.Quota, error) {
	key, max := s.Key, s.Max
	if max <= 0 {
		return noop, domain.Quota{}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams == nil {
		m.streams = map[string]int{}
	}
	if m.streams[key] >= max {
		return nil, domain.Quota{}, streamsRefusal(s)
	}
	m.streams[key]++
	q := streamsQuota(s, m.streams[key])
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.streams[key] <= 1 {
				delete(m.streams, key)
			} else {
				m.streams[key]--
			}
		})
	}, q, nil
}
