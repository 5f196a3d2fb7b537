package ratelimit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/redis/go-redis/v9"
)

// Redis is a domain.Limiter whose counters live in Redis, shared by every
// instance that uses the same prefix.
//
// It fails open: when a Redis call fails (unreachable, timeout), Allow and
// Acquire allow (with no quota to report), AddTokens drops the count, and the failure is logged at
// warn on Logger (at most one line per warnEvery, with a count of the ones
// left out). Limits protect the service and its budget; they must not take
// it down when Redis does.
//
// Nor slow it down: after a failure, a breaker keeps the limiter off Redis
// for a backoff (100ms, doubling up to 2s while Redis keeps failing), during
// which calls fail open at once without touching Redis; then one call
// probes Redis, and its success closes the breaker (logged at info when the
// outage was warned of). While the breaker is open, a release or a renewal
// of a stream slot is skipped too. A slot whose release failed or was
// skipped is held by no stream: the refresher frees it as soon as Redis
// answers again (and at each of its rounds), as does the next Acquire of
// its key that reaches Redis, else its lease running out does, as when its
// holder crashed. A stream admitted while Acquire failed open holds its
// slot all the same (Redis may have taken it, its reply lost), and the
// renewals put it in Redis once Redis answers: the stream counts again.
//
// While Redis is skipped, the limiter admits everything rather than falling
// back to a Memory limiter. Per-instance counters starting at zero would
// enforce no configured limit (n instances would allow n times it, on top of
// what Redis counted earlier in the window), could not see the stream slots
// held in Redis, and would make each release ask which store holds its slot;
// a Redis back after a short outage would then count from the wrong numbers
// either way. Failing open is the documented behaviour, simple, and loud in
// the warnings; limits that must hold through an outage need a Redis that
// stays up, not a second, weaker limiter.
//
// Keys, under prefix P:
//
//	P{W}:req:<budget key>  requests of budget in window W (unix minute), EXPIRE 120s
//	P{W}:tok:<budget key>  tokens of budget in window W, EXPIRE 120s; what a
//	                       window carried into W (debt, up to 60 windows on)
//	                       also counts here, EXPIRE 120s plus a minute a window
//	P{W}:res:<budget key>  tokens reserved by completions admitted in W and
//	                       not yet settled, EXPIRE 120s
//	P{W}:car:<budget key>  tokens W has carried into later windows, EXPIRE 120s
//	Pstreams:<key>         open streams of a budget (a key's or a project's):
//	                       a sorted set of slot ids, each
//	                       scored by the end of its lease (Redis time, unix ms);
//	                       PEXPIRE one lease, renewed with the slots
//
// The window is in the key, so the reset time is the end of the window by
// the clock (Now), and the TTL only collects old keys. The hash tag {W} keeps
// one call's keys in one slot on Redis Cluster.
//
// A stream slot is a lease of StreamLease: while it is held, one goroutine
// per limiter renews all of its held slots every StreamLease/3, and it runs
// only while a slot is held; a renewal puts back a slot Redis lost while
// its stream runs. A slot whose holder stopped renewing it (the instance
// crashed) is free again within a lease; a renewal or a release never
// touches a slot but its own.
// Leases run on Redis's clock, so instances' clocks need not agree.
type Redis struct {
	// Now is the clock; nil means time.Now. Set it before first use.
	Now func() time.Time
	// Logger receives the fail-open warnings; nil means slog.Default().
	Logger *slog.Logger
	// StreamLease is how long a stream slot outlives the last renewal of
	// its holder, and so how long the slots of a crashed instance stay
	// taken; 0 means 60s. It should be many Redis round trips long. Set it
	// before first use.
	StreamLease time.Duration

	client redis.UniversalClient
	prefix string

	br      breaker
	skipped atomic.Int64 // calls that skipped Redis since the last warning
	// failedOpen counts the calls that failed or skipped Redis: an
	// admission among them allowed what it asked without limits, a count
	// or a release went uncounted (see FailedOpen).
	failedOpen atomic.Int64

	warnMu     sync.Mutex
	lastWarn   time.Time
	suppressed int

	slotsMu    sync.Mutex
	held       map[string]heldSlot // slot id → its key, of the slots to renew
	orphans    map[string]orphan   // slot id → its key, of the slots no stream holds that Redis may keep
	refreshers int                 // running refresher goroutines: 0 or 1
	renewals   int                 // renewal rounds done, for tests
	wake       chan struct{}       // tells the refresher to look at its work now
}

var _ domain.Limiter = (*Redis)(nil)

const (
	counterTTL         = 2 * Window // how long a window's counters live
	defaultStreamLease = 60 * time.Second
	warnEvery          = 10 * time.Second
	releaseTTL         = 3 * time.Second // how long a release or a renewal may take
	orphanAge          = 10              // leases after which an orphaned slot is forgotten
)

// heldSlot is a slot a stream holds: its key, and whether Redis may have
// it (its Acquire reached Redis, or a renewal round put it there since).
type heldSlot struct {
	key     string
	inRedis bool
}

// orphan is a slot no stream holds, which Redis may keep: its release
// failed, or its Acquire failed after Redis may have taken it.
type orphan struct {
	key string
	at  time.Time // when it was orphaned
}

// NewRedis returns a limiter on client whose keys all start with prefix
// (e.g. "parley:rl:").
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix, held: map[string]heldSlot{}, orphans: map[string]orphan{}, wake: make(chan struct{}, 1)}
}

// lease returns StreamLease, or its default, in whole milliseconds (at least 3).
func (r *Redis) lease() time.Duration {
	if r.StreamLease <= 0 {
		return defaultStreamLease
	}
	return max(r.StreamLease.Truncate(time.Millisecond), 3*time.Millisecond)
}

func (r *Redis) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Redis) windowKey(w int64, kind, key string) string {
	return r.prefix + "{" + strconv.FormatInt(w, 10) + "}:" + kind + ":" + key
}

func (r *Redis) streamsKey(key string) string { return r.prefix + "streams:" + key }

// allowScript checks every budget, then counts the request against each
// budget with a request limit, and reserves its tokens against each with a
// token limit (at most that limit: domain.Reservation.Reserved), in its
// tokens and its reservations outstanding, only if none refused.
//
//	KEYS: req_1, tok_1, res_1, req_2, tok_2, res_2, …
//	ARGV: ttl seconds, the tokens to reserve, then per budget its request
//	      limit and token limit (0 = none)
//
// It returns {i, what} when budget i (1-based) refused because of its
// requests (what = 1) or tokens (what = 2: at the limit, or past it with
// the reservation unless none are counted, as full says); when allowed,
// {0, req_1, tok_1, req_2, tok_2, …}: what each budget has used, this
// request counted (0 for a count without a limit, which it neither reads
// nor counts), for the quotas.
var allowScript = redis.NewScript(`
local n = #KEYS / 3
local reserve = tonumber(ARGV[2])
local used = {0}
for i = 1, n do
  local rl = tonumber(ARGV[2 * i + 1])
  local tl = tonumber(ARGV[2 * i + 2])
  local r, t = 0, 0
  if rl > 0 then
    r = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
    if r >= rl then
      return {i, 1}
    end
  end
  if tl > 0 then
    t = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
    if t >= tl or (t > 0 and t > tl - reserve) then
      return {i, 2}
    end
  end
  used[2 * i] = r
  used[2 * i + 1] = t
end
for i = 1, n do
  if tonumber(ARGV[2 * i + 1]) > 0 then
    used[2 * i] = redis.call('INCR', KEYS[3 * i - 2])
    redis.call('EXPIRE', KEYS[3 * i - 2], ARGV[1])
  end
  local tl = tonumber(ARGV[2 * i + 2])
  if tl > 0 and reserve > 0 then
    local held = math.min(reserve, tl)
    used[2 * i + 1] = redis.call('INCRBY', KEYS[3 * i - 1], held)
    redis.call('EXPIRE', KEYS[3 * i - 1], ARGV[1])
    redis.call('INCRBY', KEYS[3 * i], held)
    redis.call('EXPIRE', KEYS[3 * i], ARGV[1])
  end
end
return used
`)

// settleScript settles completions' tokens in one window (settle): per
// budget, it adds to its tokens, releases from its reservations
// outstanding, and counts as carried what its tokens used past the limit
// and not yet carried (excess), which it returns for the caller to carry
// into the windows after, keys of other hash slots. A release from a
// window whose reservations Redis no longer has (expired) changes
// nothing.
//
//	KEYS: tok_1, res_1, car_1, tok_2, res_2, car_2, …
//	ARGV: ttl seconds, then per budget the tokens to add, to release, and
//	      its token limit
var settleScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS / 3 do
  local tok, res, car = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local release = tonumber(ARGV[3 * i])
  out[i] = 0
  if release == 0 or redis.call('EXISTS', res) == 1 then
    local t = redis.call('INCRBY', tok, ARGV[3 * i - 1])
    redis.call('EXPIRE', tok, ARGV[1])
    local r = tonumber(redis.call('GET', res) or '0')
    if release ~= 0 then
      r = redis.call('DECRBY', res, release)
      redis.call('EXPIRE', res, ARGV[1])
    end
    local c = tonumber(redis.call('GET', car) or '0')
    local over = t - r - tonumber(ARGV[3 * i + 1]) - c
    if over > 0 then
      redis.call('INCRBY', car, over)
      redis.call('EXPIRE', car, ARGV[1])
      out[i] = over
    end
  end
end
return out
`)

// acquireScript frees the slots ARGV[4], … of KEYS[1] (orphans: no stream
// holds them), then takes a slot for ARGV[3] (a new slot id) if fewer than
// ARGV[1] unexpired slots are taken, leased for ARGV[2] ms from the Redis
// server's time. It returns how many are taken then, this one included,
// or 0 when none was free.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 4, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
local taken = redis.call('ZCARD', KEYS[1])
if taken >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return taken + 1
`)

// renewScript extends the leases of slots ARGV[2], … of KEYS[1] to ARGV[1]
// ms from the Redis server's time, and puts back those Redis no longer
// has: their streams still run (Redis lost the key, restarted without
// persistence or failed over behind; the slot was taken while Redis was
// skipped; the refresher stalled past a lease), and a slot left out would
// leave its stream uncounted for as long as it runs. Put back, the slots
// may be more than the limit for a while, which is what runs; new streams
// wait until fewer do.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local exp = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], exp, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
`)

// Allow implements domain.Limiter in one script run: check all budgets,
// then count and reserve, and read back the counts for the quotas. It
// allows when Redis fails (see Redis), with no quota and no reservation:
// nothing was counted.
func (r *Redis) Allow(ctx context.Context, budgets []domain.Budget, reserve int) ([]domain.Quota, domain.Reservation, error) {
	live := make([]domain.Budget, 0, len(budgets))
	for _, b := range budgets {
		if b.RequestsPerMinute > 0 || b.TokensPerMinute > 0 {
			live = append(live, b)
		}
	}
	if len(live) == 0 {
		return nil, domain.Reservation{}, nil
	}
	w, left := window(r.now())
	reserve = max(reserve, 0)
	keys := make([]string, 0, 3*len(live))
	args := make([]any, 0, 2+2*len(live))
	args = append(args, int(counterTTL/time.Second), reserve)
	for _, b := range live {
		keys = append(keys, r.windowKey(w, "req", b.Key), r.windowKey(w, "tok", b.Key), r.windowKey(w, "res", b.Key))
		args = append(args, max(b.RequestsPerMinute, 0), max(b.TokensPerMinute, 0))
	}
	var res []int64
	if err := r.call(ctx, "allow", func() (err error) {
		res, err = allowScript.Run(ctx, r.client, keys, args...).Int64Slice()
		return err
	}); err != nil {
		return nil, domain.Reservation{}, nil
	}
	switch {
	case len(res) == 1+2*len(live) && res[0] == 0:
		quotas := make([]domain.Quota, 0, 2*len(live))
		for i, b := range live {
			quotas = appendQuotas(quotas, b, int(res[1+2*i]), int(res[2+2*i]), left)
		}
		return quotas, domain.Reservation{Tokens: reserve, Window: w}, nil
	case len(res) == 2 && res[0] >= 1 && int(res[0]) <= len(live):
		if res[1] == 2 {
			return nil, domain.Reservation{}, r.pastDebt(ctx, live[res[0]-1], live, reserve, w, left)
		}
		return nil, domain.Reservation{}, refusal(live[res[0]-1], false, left)
	}
	return nil, domain.Reservation{}, nil // not the script's answer: allowed, as when Redis fails
}

// pastDebt is latestPastDebt for budgets, one of which the tokens of
// window w refused a request reserving reserve, which ends in left: their
// counts in w and the window after are read in one pipeline, and, only for
// the budgets whose next window is full too (debt), those of the windows
// after it in a second (each a key of its own window's hash slot), so that
// a refusal with no debt, the common one, costs two reads a budget rather
// than sixty-one. When Redis fails, the refusal is refused's, with left,
// the end of w.
func (r *Redis) pastDebt(ctx context.Context, refused domain.Budget, budgets []domain.Budget, reserve int, w int64, left time.Duration) *domain.Error {
	counts := map[string][]int{} // budget key → tokens counted k windows after w
	read := func(from, to int, todo []domain.Budget) error {
		return r.call(ctx, "read carried tokens", func() error {
			gets := map[string][]*redis.StringCmd{}
			_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, b := range todo {
					for k := from; k <= to; k++ {
						gets[b.Key] = append(gets[b.Key], p.Get(ctx, r.windowKey(w+int64(k), "tok", b.Key)))
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, redis.Nil) { // Nil: a window with nothing counted in it
				return err
			}
			for key, cmds := range gets {
				for i, c := range cmds {
					counts[key][from+i], _ = c.Int()
				}
			}
			return nil
		})
	}
	var limited []domain.Budget
	for _, b := range budgets {
		if b.TokensPerMinute > 0 && counts[b.Key] == nil {
			counts[b.Key] = make([]int, 1+maxDebtWindows)
			limited = append(limited, b)
		}
	}
	if err := read(0, 1, limited); err != nil {
		return refusal(refused, true, left)
	}
	var indebted []domain.Budget
	for _, b := range limited {
		if c := counts[b.Key]; full(c[0], b.TokensPerMinute, reserve) && full(c[1], b.TokensPerMinute, reserve) {
			indebted = append(indebted, b)
		}
	}
	if len(indebted) > 0 {
		if err := read(2, maxDebtWindows, indebted); err != nil {
			return refusal(refused, true, left)
		}
	}
	return latestPastDebt(refused, budgets, left, reserve, func(b domain.Budget, k int) int { return counts[b.Key][k] })
}

// AddTokens implements domain.Limiter with a run of settleScript over
// each window's keys that settle changes (the reservation's, then the one
// under way: each its own hash slot), and, for the budgets that went past
// their limit in it, a pipeline that carries that into the windows after
// (debt). Failures are logged and the tokens dropped.
func (r *Redis) AddTokens(ctx context.Context, budgets []domain.Budget, tokens int, res domain.Reservation) {
	w, _ := window(r.now())
	type run struct {
		todo []domain.Budget
		keys []string
		args []any
	}
	var windows []int64 // in order: a reservation's window comes before w
	runs := map[int64]*run{}
	for _, b := range budgets {
		for _, s := range settle(b, tokens, res, w) {
			rn := runs[s.w]
			if rn == nil {
				rn = &run{args: []any{int(counterTTL / time.Second)}}
				runs[s.w], windows = rn, append(windows, s.w)
			}
			rn.todo = append(rn.todo, b)
			rn.keys = append(rn.keys, r.windowKey(s.w, "tok", b.Key), r.windowKey(s.w, "res", b.Key), r.windowKey(s.w, "car", b.Key))
			rn.args = append(rn.args, s.add, s.release, b.TokensPerMinute)
		}
	}
	slices.Sort(windows)
	// Tokens are counted when a completion ends, often after its caller
	// went away: count them anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTTL)
	defer cancel()
	for _, sw := range windows {
		rn := runs[sw]
		err := r.call(context.WithoutCancel(ctx), "add tokens", func() error {
			over, err := settleScript.Run(ctx, r.client, rn.keys, rn.args...).Int64Slice()
			if err != nil {
				return err
			}
			if len(over) != len(rn.todo) {
				return fmt.Errorf("the settle script answered %d counts for %d budgets", len(over), len(rn.todo))
			}
			_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, b := range rn.todo {
					for n, a := range debt(int(over[i]), b.TokensPerMinute) {
						k := r.windowKey(sw+1+int64(n), "tok", b.Key)
						p.IncrBy(ctx, k, int64(a))
						p.Expire(ctx, k, counterTTL+time.Duration(n+1)*Window)
					}
				}
				return nil
			})
			return err
		})
		if err != nil {
			return
		}
	}
}

// Acquire implements domain.Limiter. s.Max <= 0 means no limit; release is
// then a no-op and there is no quota, as when Redis failed (the slot is
// allowed, uncounted).
// The slot is leased and renewed until release (see Redis). Calling release
// more than once is harmless.
func (r *Redis) Acquire(ctx context.Context, s domain.Slots) (func(), domain.Quota, error) {
	max := s.Max
	if max <= 0 {
		return noop, domain.Quota{}, nil
	}
	k, id := r.streamsKey(s.Key), rand.Text()
	orphans := r.takeOrphans(k)
	args := []any{max, r.lease().Milliseconds(), id}
	for o := range orphans {
		args = append(args, o)
	}
	var taken int64
	err := r.call(ctx, "acquire", func() (err error) {
		taken, err = acquireScript.Run(ctx, r.client, []string{k}, args...).Int64()
		return err
	})
	if err != nil {
		// The orphans are still to free, as old as they were.
		r.slotsMu.Lock()
		maps.Copy(r.orphans, orphans)
		if len(orphans) > 0 {
			r.startRefresher()
		}
		r.slotsMu.Unlock()
	} else if taken < 1 {
		return nil, domain.Quota{}, streamsRefusal(s)
	}
	// Held, and renewed, even when Acquire failed open: Redis may have
	// taken the slot (it ran the script, its reply was lost), and if not,
	// the renewals put it there once Redis answers, so that a stream
	// admitted during an outage counts once it is over.
	r.hold(id, k, !errors.Is(err, errSkipped))
	var once sync.Once
	release := func() {
		once.Do(func() {
			if !r.unhold(id) {
				return // not in Redis: skipped at Acquire, and not renewed since
			}
			// Release runs when a stream ends, often because its caller went away.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTTL)
			defer cancel()
			if err := r.call(context.WithoutCancel(ctx), "release", func() error {
				return r.client.ZRem(rctx, k, id).Err()
			}); err != nil {
				r.orphan(id, k)
			}
		})
	}
	if err != nil {
		return release, domain.Quota{}, nil
	}
	return release, streamsQuota(s, int(taken)), nil
}

// orphan notes that slot id of key k is held by no stream though Redis may
// keep it, for the refresher, or the next Acquire of k, to free.
func (r *Redis) orphan(id, k string) {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	r.orphans[id] = orphan{key: k, at: time.Now()}
	r.startRefresher()
}

// takeOrphans returns the orphaned slots of key k by id, forgetting them,
// and forgets those of any key orphaned so long ago that Redis has let them
// go (their lease ran out, even one that began when a Redis that paused ran
// a late Acquire).
func (r *Redis) takeOrphans(k string) map[string]orphan {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	var taken map[string]orphan
	for id, o := range r.orphans {
		switch {
		case time.Since(o.at) > orphanAge*r.lease():
			delete(r.orphans, id)
		case o.key == k:
			if taken == nil {
				taken = map[string]orphan{}
			}
			taken[id] = o
			delete(r.orphans, id)
		}
	}
	return taken
}

// hold has the refresher renew slot id of key k, starting it if none runs;
// inRedis says Redis may have it.
func (r *Redis) hold(id, k string, inRedis bool) {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	r.held[id] = heldSlot{k, inRedis}
	r.startRefresher()
}

// startRefresher starts the refresher if none runs; slotsMu is held.
func (r *Redis) startRefresher() {
	if r.refreshers == 0 {
		r.refreshers++
		go r.refresh()
	}
}

// wakeRefresher has the refresher look at its work now: a slot was
// released, or Redis answers again and the orphans can be freed.
func (r *Redis) wakeRefresher() {
	select {
	case r.wake <- struct{}{}:
	default: // already woken
	}
}

// unhold stops renewing slot id, and reports whether Redis may have it;
// the refresher ends when it was the last and no orphan is left to free.
func (r *Redis) unhold(id string) (inRedis bool) {
	r.slotsMu.Lock()
	inRedis = r.held[id].inRedis
	delete(r.held, id)
	wake := len(r.held) == 0 || len(r.orphans) > 0
	r.slotsMu.Unlock()
	if wake {
		r.wakeRefresher()
	}
	return inRedis
}

// refresh renews every held slot each lease/3, in one pipeline, and frees
// the orphaned slots then, whenever it is woken (a release, Redis
// answering again) and, while some are left, at the breaker's pace; it returns once no slot is held and no orphan is left
// (or the client was closed). An orphan left for the next Acquire of its
// key alone stayed taken on every other instance until its lease ran out,
// refusing their streams for up to a lease after Redis came back.
func (r *Redis) refresh() {
	lease := r.lease()
	tick := time.NewTicker(lease / 3)
	defer tick.Stop()
	renew := false
	for {
		held, orphans, ok := r.work(renew)
		if !ok {
			return
		}
		alive, freed := true, false
		if renew && len(held) > 0 {
			alive = r.renew(held, lease)
			r.orphanReleased(held)
		}
		if alive && len(orphans) > 0 {
			alive, freed = r.free(orphans)
		}
		if !alive {
			r.slotsMu.Lock()
			r.refreshers--
			r.slotsMu.Unlock()
			return
		}
		if freed {
			renew = false
			continue // nothing may be left to do: look again, and end if so
		}
		// Orphans Redis did not take (it is down, or the breaker skipped
		// the call): try again at the breaker's pace, not a lease/3 later,
		// so that they are freed soon after Redis answers even if this
		// instance makes no other call to Redis meanwhile.
		var retry <-chan time.Time
		if len(orphans) > 0 {
			retry = time.After(breakerMax)
		}
		select {
		case <-r.wake:
			renew = false
		case <-retry:
			renew = false
		case <-tick.C:
			renew = true
		}
	}
}

// work returns the ids of the orphans by key and, when renew is set, of
// the held slots, forgetting the orphans Redis has let go (see
// takeOrphans). When there is neither held slot nor orphan it counts the
// refresher as ended and returns false: the refresher must return.
func (r *Redis) work(renew bool) (held, orphans map[string][]any, ok bool) {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	for id, o := range r.orphans {
		if time.Since(o.at) > orphanAge*r.lease() {
			delete(r.orphans, id)
		}
	}
	if len(r.held) == 0 && len(r.orphans) == 0 {
		r.refreshers--
		return nil, nil, false
	}
	held, orphans = map[string][]any{}, map[string][]any{}
	if renew {
		for id, h := range r.held {
			held[h.key] = append(held[h.key], id)
			// The round may put it in Redis from now on: its release
			// must take it out.
			h.inRedis = true
			r.held[id] = h
		}
	}
	for id, o := range r.orphans {
		orphans[o.key] = append(orphans[o.key], id)
	}
	return held, orphans, true
}

// orphanReleased orphans the slots of byKey, those a renewal round put
// back, whose streams released them meanwhile: the release's ZREM may have
// come before the renewal's ZADD, which would then have put the slot back
// for a lease. The refresher frees them at once.
func (r *Redis) orphanReleased(byKey map[string][]any) {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	released := false
	for k, ids := range byKey {
		for _, id := range ids {
			if _, ok := r.held[id.(string)]; !ok {
				r.orphans[id.(string)] = orphan{key: k, at: time.Now()}
				released = true
			}
		}
	}
	if released {
		r.startRefresher() // it runs: it called this
		r.wakeRefresher()
	}
}

// free removes the orphaned slots byKey from Redis in one pipeline, unless
// the breaker skips Redis, and forgets those it removed; freed says it
// did. alive is false when the client is closed, for good.
func (r *Redis) free(byKey map[string][]any) (alive, freed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTTL)
	defer cancel()
	err := r.call(context.Background(), "release", func() error {
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, ids := range byKey {
				p.ZRem(ctx, k, ids...)
			}
			return nil
		})
		return err
	})
	if err == nil {
		r.slotsMu.Lock()
		for _, ids := range byKey {
			for _, id := range ids {
				delete(r.orphans, id.(string))
			}
		}
		r.slotsMu.Unlock()
	}
	return !errors.Is(err, redis.ErrClosed), err == nil
}

// renew extends the leases of byKey's slots in one pipeline, unless the
// breaker skips Redis. Failures are logged; it returns false when the client
// is closed, for good.
func (r *Redis) renew(byKey map[string][]any, lease time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTTL)
	defer cancel()
	ms := lease.Milliseconds()
	err := r.call(context.Background(), "renew", func() error {
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, ids := range byKey {
				renewScript.Eval(ctx, p, []string{k}, append([]any{ms}, ids...)...)
			}
			return nil
		})
		return err
	})
	r.slotsMu.Lock()
	r.renewals++
	r.slotsMu.Unlock()
	return !errors.Is(err, redis.ErrClosed)
}

// downAtStart records that Redis did not answer when the limiter started
// (err): as after a failure of a call, it warns and opens the breaker, so
// that the first requests skip Redis rather than each wait on it, and the
// first probe that Redis answers logs that the limits apply again.
func (r *Redis) downAtStart(err error) {
	t, _ := r.br.enter()
	r.br.done(t, failed, r.failOpen(context.Background(), "start", err))
}

// errSkipped is the error of call when the breaker is open.
var errSkipped = errors.New("ratelimit: Redis skipped while it fails")

// call runs f, op's use of Redis, through the breaker (see Redis). It
// returns f's error, or errSkipped when Redis is skipped: any error means
// fail open. Failures are logged (see failOpen); ctx is the caller's, for
// the log and to tell a caller that went away from a failure of Redis.
func (r *Redis) call(ctx context.Context, op string, f func() error) error {
	t, ok := r.br.enter()
	if !ok {
		r.skipped.Add(1)
		r.failedOpen.Add(1)
		return errSkipped
	}
	err := f()
	switch {
	case err == nil:
		if recovered, down := r.br.done(t, answered, false); recovered {
			r.logger().LogAttrs(ctx, slog.LevelInfo, "rate limiter: Redis answers again; limits apply again",
				slog.Duration("down", down.Round(time.Millisecond)))
		}
		if t.probe {
			r.wakeRefresher() // Redis is back: free the slots orphaned meanwhile
		}
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		r.br.done(t, abandoned, false) // not worth a warning either
	default:
		r.failedOpen.Add(1)
		r.br.done(t, failed, r.failOpen(ctx, op, err))
	}
	return err
}

// FailedOpen returns how many calls so far failed or skipped Redis (see
// failedOpen): parley_rate_limiter_failed_open_total.
func (r *Redis) FailedOpen() int64 { return r.failedOpen.Load() }

// logger returns Logger, or slog.Default().
func (r *Redis) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// failOpen logs err of op at warn, at most once per warnEvery, and reports
// whether it did.
func (r *Redis) failOpen(ctx context.Context, op string, err error) bool {
	r.warnMu.Lock()
	now := time.Now()
	if !r.lastWarn.IsZero() && now.Sub(r.lastWarn) < warnEvery {
		r.suppressed++
		r.warnMu.Unlock()
		return false
	}
	suppressed := r.suppressed
	r.lastWarn, r.suppressed = now, 0
	r.warnMu.Unlock()
	r.logger().LogAttrs(ctx, slog.LevelWarn,
		"rate limiter: Redis failed; allowing without limits, and skipping Redis until it answers again",
		slog.String("op", op), slog.String("error", err.Error()), slog.Int("suppressed", suppressed),
		slog.Int64("skipped", r.skipped.Swap(0)))
	return true
}
