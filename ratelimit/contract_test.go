package ratelimit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// impl makes a fresh, empty limiter of one implementation on clock.
type impl struct {
	name string
	new  func(t *testing.T, clock *fakeClock) domain.Limiter
}

func impls() []impl {
	return []impl{
		{"memory", func(t *testing.T, clock *fakeClock) domain.Limiter {
			m := NewMemory()
			m.Now = clock.Now
			return m
		}},
		{"redis", func(t *testing.T, clock *fakeClock) domain.Limiter {
			c := testRedis(t)
			return newTestRedis(t, c, testPrefix(t, c), clock)
		}},
	}
}

// TestContract runs the domain.Limiter contract against every implementation.
func TestContract(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					clock := newClock()
					tc.run(t, im.new(t, clock), clock)
				})
			}
		})
	}
}

var contract = []struct {
	name string
	run  func(t *testing.T, l domain.Limiter, clock *fakeClock)
}{
	{"UnderLimitAllowed", testUnderLimitAllowed},
	{"AtLimitRefused", testAtLimitRefused},
	{"RefusalCountsNothing", testRefusalCountsNothing},
	{"Tokens", testTokens},
	{"NewWindowResets", testNewWindowResets},
	{"TokenDebtCarried", testTokenDebtCarried},
	{"TokensReserved", testTokensReserved},
	{"NoLimitsNoCounting", testNoLimits},
	{"Acquire", testAcquire},
	{"AcquireUnlimited", testAcquireUnlimited},
	{"ConcurrentAllow", testConcurrentAllow},
	{"ConcurrentAcquire", testConcurrentAcquire},
	{"AllowReportsQuotas", testAllowQuotas},
	{"AcquireReportsQuota", testAcquireQuota},
}

var bg = context.Background()

func project(rpm, tpm int) domain.Budget {
	return domain.Budget{Key: "prj_1", Name: "project", RequestsPerMinute: rpm, TokensPerMinute: tpm}
}

func key(id string, rpm, tpm int) domain.Budget {
	return domain.Budget{Key: "prj_1/" + id, Name: "key", RequestsPerMinute: rpm, TokensPerMinute: tpm}
}

// allowN calls Allow n times and fails t at the first refusal.
func allowN(t *testing.T, l domain.Limiter, n int, budgets ...domain.Budget) {
	t.Helper()
	for i := range n {
		if err := allow(bg, l, budgets); err != nil {
			t.Fatalf("Allow #%d: %v; want allowed", i+1, err)
		}
	}
}

// refused asserts that err is a RateLimited refusal of limitName with limit.
func refused(t *testing.T, err error, limitName string, limit int) *domain.Error {
	t.Helper()
	var e *domain.Error
	if !errors.As(err, &e) || e.Kind != domain.RateLimited {
		t.Fatalf("err = %v; want a RateLimited *domain.Error", err)
	}
	most := time.Minute
	if strings.HasSuffix(limitName, "-tokens-per-minute") { // or past the minutes carried tokens fill
		most += maxDebtWindows * time.Minute
	}
	if e.RetryAfter <= 0 || e.RetryAfter > most {
		t.Errorf("RetryAfter = %v; want in (0, %v]", e.RetryAfter, most)
	}
	d := e.Details
	if d["limit"] != limit || d["limitName"] != limitName || d["remaining"] != 0 || d["windowSeconds"] != 60 {
		t.Errorf("Details = %v; want limit %d, limitName %s, remaining 0, windowSeconds 60", d, limit, limitName)
	}
	if rs, ok := d["resetSeconds"].(int); !ok || rs < 1 || rs > int(most/time.Second) {
		t.Errorf("Details[resetSeconds] = %#v; want an int in [1, %d]", d["resetSeconds"], int(most/time.Second))
	}
	return e
}

func testUnderLimitAllowed(t *testing.T, l domain.Limiter, _ *fakeClock) {
	allowN(t, l, 3, project(3, 0), key("key_a", 5, 0))
	allowN(t, l, 5, key("key_b", 5, 0)) // another key has a budget of its own
	if err := allow(bg, l, nil); err != nil {
		t.Fatalf("Allow(no budgets) = %v", err)
	}
}

func testAtLimitRefused(t *testing.T, l domain.Limiter, _ *fakeClock) {
	b := project(3, 0)
	allowN(t, l, 3, b)
	e := refused(t, allow(bg, l, []domain.Budget{b}), "project-requests-per-minute", 3)
	// The clock is 37s into its minute: 23s left.
	if e.RetryAfter != 23*time.Second || e.Details["resetSeconds"] != 23 {
		t.Errorf("RetryAfter = %v, resetSeconds = %v; want 23s, 23", e.RetryAfter, e.Details["resetSeconds"])
	}
	const want = "rate limit reached: 3 requests per minute for this project; retry in 23s"
	if e.Message != want {
		t.Errorf("Message = %q; want %q", e.Message, want)
	}
	kb := key("key_a", 2, 0)
	allowN(t, l, 2, kb)
	e = refused(t, allow(bg, l, []domain.Budget{kb}), "key-requests-per-minute", 2)
	if !strings.Contains(e.Message, "2 requests per minute for this project's key") {
		t.Errorf("Message = %q; want it to name the key's limit", e.Message)
	}
	// A limit of one counts in the singular.
	k1 := key("key_c", 1, 0)
	allowN(t, l, 1, k1)
	e = refused(t, allow(bg, l, []domain.Budget{k1}), "key-requests-per-minute", 1)
	if !strings.HasPrefix(e.Message, "rate limit reached: 1 request per minute for this project's key; ") {
		t.Errorf("Message = %q; want 1 request per minute", e.Message)
	}
	t1 := key("key_d", 0, 1)
	l.AddTokens(bg, []domain.Budget{t1}, 1, domain.Reservation{})
	e = refused(t, allow(bg, l, []domain.Budget{t1}), "key-tokens-per-minute", 1)
	if !strings.HasPrefix(e.Message, "rate limit reached: 1 token per minute for this project's key; ") {
		t.Errorf("Message = %q; want 1 token per minute", e.Message)
	}
}

func testRefusalCountsNothing(t *testing.T, l domain.Limiter, _ *fakeClock) {
	// The project refuses: the key's budget is not consumed.
	p, k := project(2, 0), key("key_a", 5, 0)
	allowN(t, l, 2, p, k)
	for range 3 {
		refused(t, allow(bg, l, []domain.Budget{p, k}), "project-requests-per-minute", 2)
	}
	allowN(t, l, 3, k) // 2 + 3 = 5: the refusals counted nothing
	refused(t, allow(bg, l, []domain.Budget{k}), "key-requests-per-minute", 5)

	// The key, checked after the project, refuses: the project is not consumed.
	p2 := domain.Budget{Key: "prj_2", Name: "project", RequestsPerMinute: 10}
	k2 := domain.Budget{Key: "prj_2/key_b", Name: "key", RequestsPerMinute: 1}
	allowN(t, l, 1, p2, k2)
	for range 3 {
		refused(t, allow(bg, l, []domain.Budget{p2, k2}), "key-requests-per-minute", 1)
	}
	allowN(t, l, 9, p2) // 1 + 9 = 10
	refused(t, allow(bg, l, []domain.Budget{p2}), "project-requests-per-minute", 10)
}

func testTokens(t *testing.T, l domain.Limiter, _ *fakeClock) {
	p := project(0, 100)
	allowN(t, l, 1, p)
	l.AddTokens(bg, []domain.Budget{p}, 60, domain.Reservation{})
	allowN(t, l, 1, p) // 60 < 100
	l.AddTokens(bg, []domain.Budget{p}, 50, domain.Reservation{})
	e := refused(t, allow(bg, l, []domain.Budget{p}), "project-tokens-per-minute", 100)
	if !strings.HasPrefix(e.Message, "rate limit reached: 100 tokens per minute for this project; retry in ") {
		t.Errorf("Message = %q", e.Message)
	}

	// Tokens count only against budgets with a token limit, and a key's
	// token limit refuses on its own.
	k := key("key_a", 10, 30)
	l.AddTokens(bg, []domain.Budget{k, key("key_b", 10, 0)}, 30, domain.Reservation{})
	refused(t, allow(bg, l, []domain.Budget{k}), "key-tokens-per-minute", 30)
	allowN(t, l, 10, key("key_b", 10, 0))
	l.AddTokens(bg, []domain.Budget{key("key_c", 0, 50)}, 0, domain.Reservation{}) // nothing
	l.AddTokens(bg, []domain.Budget{key("key_c", 0, 50)}, -5, domain.Reservation{})
	allowN(t, l, 1, key("key_c", 0, 50))
}

func testNewWindowResets(t *testing.T, l domain.Limiter, clock *fakeClock) {
	p, k := project(2, 0), key("key_a", 0, 10)
	allowN(t, l, 2, p)
	l.AddTokens(bg, []domain.Budget{k}, 10, domain.Reservation{})
	refused(t, allow(bg, l, []domain.Budget{p}), "project-requests-per-minute", 2)
	refused(t, allow(bg, l, []domain.Budget{k}), "key-tokens-per-minute", 10)

	clock.Add(22 * time.Second) // 59s into the minute: the same window, 1s left
	e := refused(t, allow(bg, l, []domain.Budget{p}), "project-requests-per-minute", 2)
	if e.RetryAfter != time.Second || e.Details["resetSeconds"] != 1 {
		t.Errorf("RetryAfter = %v, resetSeconds = %v; want 1s, 1", e.RetryAfter, e.Details["resetSeconds"])
	}
	clock.Add(500 * time.Millisecond) // 0.5s left, still at least 1s
	e = refused(t, allow(bg, l, []domain.Budget{p}), "project-requests-per-minute", 2)
	if e.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v; want at least 1s", e.RetryAfter)
	}

	clock.Add(500 * time.Millisecond) // the next minute
	allowN(t, l, 2, p)
	allowN(t, l, 1, k)
	refused(t, allow(bg, l, []domain.Budget{p}), "project-requests-per-minute", 2)

	clock.Add(3 * time.Minute) // windows later, after idle minutes
	allowN(t, l, 2, p)
}

// testTokenDebtCarried: tokens counted past the limit (completions that
// ran together, or one that used many) wait in the minutes after, up to
// the limit in each, so that over time the limit holds; one minute's
// excess is not forgiven at the next.
func testTokenDebtCarried(t *testing.T, l domain.Limiter, clock *fakeClock) {
	p := project(0, 100)
	allowN(t, l, 1, p)
	l.AddTokens(bg, []domain.Budget{p}, 350, domain.Reservation{}) // 250 past: 100, 100 and 50 in the next three minutes
	// Refused until the minute that has room: the two full minutes after
	// this one's 23 s left, and again in each of them.
	for i := range 3 {
		e := refused(t, allow(bg, l, []domain.Budget{p}), "project-tokens-per-minute", 100)
		want := 23*time.Second + time.Duration(2-i)*time.Minute
		if e.RetryAfter != want || e.Details["resetSeconds"] != int(want/time.Second) {
			t.Errorf("refusal %d: RetryAfter = %v, resetSeconds = %v; want %v, the start of the first minute with room",
				i+1, e.RetryAfter, e.Details["resetSeconds"], want)
		}
		if carried := strings.Contains(e.Error(), "count in the minutes after"); carried != (i < 2) {
			t.Errorf("refusal %d says %q; want it to say why only while it names a later minute", i+1, e.Error())
		}
		if i < 2 {
			clock.Add(time.Minute)
		}
	}
	clock.Add(time.Minute)
	q, _, err := l.Allow(bg, []domain.Budget{p}, 0)
	// 37s into the minute; then 110, 10 past, into the next minute.
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 100, 50, 23*time.Second))
	l.AddTokens(bg, []domain.Budget{p}, 60, domain.Reservation{})
	clock.Add(time.Minute)
	q, _, err = l.Allow(bg, []domain.Budget{p}, 0)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 100, 90, 23*time.Second))

	// Of two budgets carrying tokens, the refusal names the one that
	// admits again last: a client that waits that long is not refused by
	// the other. The key's 100 a minute carry 1,900 for 19 minutes, the
	// project's 1,000 a minute 1,000 for one.
	pk := []domain.Budget{{Key: "prj_2", Name: "project", TokensPerMinute: 1000}, {Key: "prj_2/key_a", Name: "key", TokensPerMinute: 100}}
	l.AddTokens(bg, pk, 2000, domain.Reservation{})
	e := refused(t, allow(bg, l, pk), "key-tokens-per-minute", 100)
	if want := 23*time.Second + 19*time.Minute; e.RetryAfter != want {
		t.Errorf("two budgets carrying tokens: RetryAfter = %v; want %v, the key's, which admits last", e.RetryAfter, want)
	}

	// What is carried is bounded: an hour of the limit at most.
	k := key("key_a", 0, 1)
	l.AddTokens(bg, []domain.Budget{k}, 1_000_000, domain.Reservation{})
	clock.Add(time.Duration(maxDebtWindows) * time.Minute)
	refused(t, allow(bg, l, []domain.Budget{k}), "key-tokens-per-minute", 1)
	clock.Add(time.Minute)
	allowN(t, l, 1, k)
}

// testTokensReserved: a request reserves its estimate when admitted, so
// that requests admitted together cannot all run past the limit before
// any has ended; what it used replaces the reservation when it ends.
func testTokensReserved(t *testing.T, l domain.Limiter, clock *fakeClock) {
	p := project(0, 100)
	tokensLeft := func(reserve, left int) domain.Reservation {
		t.Helper()
		q, r, err := l.Allow(bg, []domain.Budget{p}, reserve)
		quotasAre(t, q, err, perMinute("project-tokens-per-minute", 100, left, 23*time.Second))
		if r.Tokens != reserve || r.Window == 0 {
			t.Errorf("Reservation = %+v; want %d tokens in a window", r, reserve)
		}
		return r
	}
	r1 := tokensLeft(40, 60)
	tokensLeft(40, 20)
	_, r, err := l.Allow(bg, []domain.Budget{p}, 40) // 80 + 40 would pass 100
	var e *domain.Error
	if !errors.As(err, &e) || e.Kind != domain.RateLimited || r != (domain.Reservation{}) {
		t.Fatalf("Allow = %+v, %v; want RateLimited and no reservation", r, err)
	}
	if e.RetryAfter != 23*time.Second || e.Details["remaining"] != 20 || e.Details["limitName"] != "project-tokens-per-minute" {
		t.Errorf("refusal: RetryAfter %v, Details %v; want 23s, 20 remaining", e.RetryAfter, e.Details)
	}
	if want := "retry in 23s (this request reserves an estimated 40: its prompt, with maxTokens when set; 20 are left)"; !strings.HasSuffix(e.Message, want) {
		t.Errorf("Message = %q; want it to end %q", e.Message, want)
	}
	r4 := tokensLeft(20, 0) // fits exactly
	// What a request did not use of its reservation comes back in its
	// window: 40 reserved, 10 used.
	l.AddTokens(bg, []domain.Budget{p}, 10, r1)
	tokensLeft(30, 0)
	refused(t, allow(bg, l, []domain.Budget{p}), "project-tokens-per-minute", 100)

	// Once the window has ended, what was used past the reservation counts
	// in the one under way, and nothing comes back.
	clock.Add(time.Minute)
	l.AddTokens(bg, []domain.Budget{p}, 70, r4) // 20 reserved: 50 more now
	tokensLeft(0, 50)
	l.AddTokens(bg, []domain.Budget{p}, 0, r4)
	tokensLeft(0, 50)

	// A reservation larger than the limit is admitted where nothing is
	// counted yet (else it never could be), and reserves the limit: each
	// budget's own.
	pk := []domain.Budget{{Key: "prj_2", Name: "project", TokensPerMinute: 1000}, {Key: "prj_2/key_a", Name: "key", TokensPerMinute: 100}}
	q, big, err := l.Allow(bg, pk, 150)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 1000, 850, 23*time.Second), perMinute("key-tokens-per-minute", 100, 0, 23*time.Second))
	refused(t, allow(bg, l, pk[1:]), "key-tokens-per-minute", 100)
	l.AddTokens(bg, pk, 0, big) // gave up before the provider took it: all back
	q, _, err = l.Allow(bg, pk, 0)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 1000, 1000, 23*time.Second), perMinute("key-tokens-per-minute", 100, 100, 23*time.Second))

	// What a minute carries into the next is what it used past the limit,
	// not what completions still running had reserved: five reserve 200
	// of 1,000; the first uses 400 while the others run, then they use 60
	// each: 640 in all, nothing to carry.
	p3 := domain.Budget{Key: "prj_3", Name: "project", TokensPerMinute: 1000}
	five := func() []domain.Reservation {
		var rs []domain.Reservation
		for range 5 {
			_, r, err := l.Allow(bg, []domain.Budget{p3}, 200)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	rs := five()
	l.AddTokens(bg, []domain.Budget{p3}, 400, rs[0])
	for _, r := range rs[1:] {
		l.AddTokens(bg, []domain.Budget{p3}, 60, r)
	}
	clock.Add(time.Minute)
	q, _, err = l.Allow(bg, []domain.Budget{p3}, 0)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 1000, 1000, 23*time.Second))
	// And all of it: five use 300 each, the first while the others run,
	// 1,500 in all: 500 carried, however the overshoot came.
	rs = five()
	for _, r := range rs {
		l.AddTokens(bg, []domain.Budget{p3}, 300, r)
	}
	clock.Add(time.Minute)
	q, _, err = l.Allow(bg, []domain.Budget{p3}, 0)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 1000, 500, 23*time.Second))

	// A completion that ends after its minute did has its reservation
	// count as used in that minute, which carries what it then used past
	// the limit: 300 and 600 reserved, 700 and 600 used, the second in
	// the next minute: 1,300, and 300 carried into the minute under way.
	p4 := domain.Budget{Key: "prj_4", Name: "project", TokensPerMinute: 1000}
	_, ra, err := l.Allow(bg, []domain.Budget{p4}, 300)
	if err != nil {
		t.Fatal(err)
	}
	_, rb, err := l.Allow(bg, []domain.Budget{p4}, 600)
	if err != nil {
		t.Fatal(err)
	}
	l.AddTokens(bg, []domain.Budget{p4}, 700, ra)
	clock.Add(time.Minute)
	l.AddTokens(bg, []domain.Budget{p4}, 600, rb)
	q, _, err = l.Allow(bg, []domain.Budget{p4}, 0)
	quotasAre(t, q, err, perMinute("project-tokens-per-minute", 1000, 700, 23*time.Second))
}

func testNoLimits(t *testing.T, l domain.Limiter, _ *fakeClock) {
	b := domain.Budget{Key: "prj_1", Name: "project"}
	allowN(t, l, 100, b)
	l.AddTokens(bg, []domain.Budget{b}, 1_000_000, domain.Reservation{})
	allowN(t, l, 1, b)
}

func testAcquire(t *testing.T, l domain.Limiter, _ *fakeClock) {
	const k = "prj_1/key_a"
	r1, err := acquire(bg, l, k, 2)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := acquire(bg, l, k, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = acquire(bg, l, k, 2)
	var e *domain.Error
	if !errors.As(err, &e) || e.Kind != domain.RateLimited {
		t.Fatalf("third Acquire: %v; want RateLimited", err)
	}
	if e.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v; want 1s", e.RetryAfter)
	}
	const want = "too many open streams for this API key (max 2); close one and retry"
	if e.Message != want {
		t.Errorf("Message = %q; want %q", e.Message, want)
	}
	// Another key has slots of its own.
	rb, err := acquire(bg, l, "prj_1/key_b", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer rb()

	r1()
	r3, err := acquire(bg, l, k, 2)
	if err != nil {
		t.Fatalf("Acquire after a release: %v", err)
	}
	r1() // a second release frees nothing more
	r1()
	if _, err := acquire(bg, l, k, 2); domain.KindOf(err) != domain.RateLimited {
		t.Fatalf("Acquire after a double release: %v; want RateLimited (2 of 2 still open)", err)
	}
	r2()
	r3()
	r3()
	for range 2 {
		if _, err := acquire(bg, l, k, 2); err != nil {
			t.Fatalf("Acquire after all releases: %v", err)
		}
	}
}

func testAcquireUnlimited(t *testing.T, l domain.Limiter, _ *fakeClock) {
	for _, max := range []int{0, -1} {
		for range 50 {
			release, err := acquire(bg, l, "prj_1/key_a", max)
			if err != nil || release == nil {
				t.Fatalf("Acquire(max %d): release nil = %t, err = %v; want a release and no error", max, release == nil, err)
			}
			release()
			release()
		}
	}
}

// perMinute is the quota of a per-minute limit with reset left in its window.
func perMinute(name string, limit, remaining int, reset time.Duration) domain.Quota {
	return domain.Quota{Name: name, Limit: limit, Remaining: remaining, Reset: reset, Window: time.Minute}
}

// quotasAre fails t unless Allow allowed with the quotas want.
func quotasAre(t *testing.T, got []domain.Quota, err error, want ...domain.Quota) {
	t.Helper()
	if err != nil {
		t.Fatalf("Allow = %v; want allowed", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("quotas = %+v;\nwant %+v", got, want)
	}
}

func testAllowQuotas(t *testing.T, l domain.Limiter, clock *fakeClock) {
	p, k := project(3, 100), key("key_a", 2, 0)
	both := []domain.Budget{p, k}
	// Requests once this one is counted; tokens with its reservation
	// (none here).
	// The clock is 37s into its minute: 23s left.
	q, _, err := l.Allow(bg, both, 0)
	quotasAre(t, q, err,
		perMinute("project-requests-per-minute", 3, 2, 23*time.Second),
		perMinute("project-tokens-per-minute", 100, 100, 23*time.Second),
		perMinute("key-requests-per-minute", 2, 1, 23*time.Second))
	l.AddTokens(bg, both, 30, domain.Reservation{})
	clock.Add(10 * time.Second)
	q, _, err = l.Allow(bg, both, 0)
	quotasAre(t, q, err,
		perMinute("project-requests-per-minute", 3, 1, 13*time.Second),
		perMinute("project-tokens-per-minute", 100, 70, 13*time.Second),
		perMinute("key-requests-per-minute", 2, 0, 13*time.Second))
	// Remaining 0, then the refusal says the same.
	e := refused(t, allow(bg, l, both), "key-requests-per-minute", 2)
	if e.Details["resetSeconds"] != 13 {
		t.Errorf("resetSeconds = %v; want 13, as the quota said", e.Details["resetSeconds"])
	}
	q, _, err = l.Allow(bg, []domain.Budget{p}, 0)
	quotasAre(t, q, err,
		perMinute("project-requests-per-minute", 3, 0, 13*time.Second),
		perMinute("project-tokens-per-minute", 100, 70, 13*time.Second))

	// A budget with a token limit only: its tokens, no requests.
	tk := key("key_b", 0, 50)
	l.AddTokens(bg, []domain.Budget{tk}, 20, domain.Reservation{})
	q, _, err = l.Allow(bg, []domain.Budget{tk}, 0)
	quotasAre(t, q, err, perMinute("key-tokens-per-minute", 50, 30, 13*time.Second))

	// No limit, or no budget: no quota.
	for _, bs := range [][]domain.Budget{nil, {{Key: "prj_1", Name: "project"}}} {
		q, _, err = l.Allow(bg, bs, 0)
		quotasAre(t, q, err)
	}

	// The next window starts afresh, a whole minute to go.
	clock.Add(13 * time.Second)
	q, _, err = l.Allow(bg, both, 0)
	quotasAre(t, q, err,
		perMinute("project-requests-per-minute", 3, 2, time.Minute),
		perMinute("project-tokens-per-minute", 100, 100, time.Minute),
		perMinute("key-requests-per-minute", 2, 1, time.Minute))
}

func testAcquireQuota(t *testing.T, l domain.Limiter, _ *fakeClock) {
	const k = "prj_1/key_a"
	slots := func(remaining int) domain.Quota {
		return domain.Quota{Name: "key-concurrent-streams", Limit: 2, Remaining: remaining, Reset: time.Second}
	}
	r1, q, err := l.Acquire(bg, keySlots(k, 2))
	if err != nil || q != slots(1) {
		t.Fatalf("first Acquire = %+v, %v; want %+v", q, err, slots(1))
	}
	r2, q, err := l.Acquire(bg, keySlots(k, 2))
	if err != nil || q != slots(0) {
		t.Fatalf("second Acquire = %+v, %v; want %+v", q, err, slots(0))
	}
	if _, q, err := l.Acquire(bg, keySlots(k, 2)); domain.KindOf(err) != domain.RateLimited || q != (domain.Quota{}) {
		t.Fatalf("third Acquire = %+v, %v; want RateLimited and no quota", q, err)
	}
	r1()
	r3, q, err := l.Acquire(bg, keySlots(k, 2))
	if err != nil || q != slots(0) {
		t.Fatalf("Acquire after a release = %+v, %v; want %+v", q, err, slots(0))
	}
	r2()
	r3()
	r4, q, err := l.Acquire(bg, keySlots(k, 2))
	if err != nil || q != slots(1) {
		t.Fatalf("Acquire after all releases = %+v, %v; want %+v", q, err, slots(1))
	}
	r4()
	unlimited, q, err := l.Acquire(bg, keySlots(k, 0))
	if err != nil || q != (domain.Quota{}) {
		t.Fatalf("Acquire with no limit = %+v, %v; want no quota", q, err)
	}
	unlimited()
}

func testConcurrentAllow(t *testing.T, l domain.Limiter, _ *fakeClock) {
	budgets := []domain.Budget{project(10, 0), key("key_a", 100, 0)}
	var allowed, limited, other int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			err := allow(bg, l, budgets)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				allowed++
			case domain.KindOf(err) == domain.RateLimited:
				limited++
			default:
				other++
			}
		})
	}
	wg.Wait()
	if allowed != 10 || limited != 40 || other != 0 {
		t.Fatalf("allowed %d, refused %d, other errors %d; want 10, 40, 0", allowed, limited, other)
	}
	// Only the 10 allowed requests counted against the key.
	allowN(t, l, 90, key("key_a", 100, 0))
	refused(t, allow(bg, l, []domain.Budget{key("key_a", 100, 0)}), "key-requests-per-minute", 100)
}

func testConcurrentAcquire(t *testing.T, l domain.Limiter, _ *fakeClock) {
	const k = "prj_1/key_a"
	var (
		mu       sync.Mutex
		releases []func()
		limited  int
		wg       sync.WaitGroup
	)
	for range 50 {
		wg.Go(func() {
			release, err := acquire(bg, l, k, 5)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				limited++
				return
			}
			releases = append(releases, release)
		})
	}
	wg.Wait()
	if len(releases) != 5 || limited != 45 {
		t.Fatalf("acquired %d, refused %d; want 5, 45", len(releases), limited)
	}
	for _, r := range releases {
		wg.Go(func() { r(); r() })
	}
	wg.Wait()
	for range 5 {
		if _, err := acquire(bg, l, k, 5); err != nil {
			t.Fatalf("Acquire after all releases: %v", err)
		}
	}
}
