package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/redis/go-redis/v9"
)

// A stream held for several leases keeps its slot, though the key lives no
// longer than a lease: the holder renews it. Its release frees it at once.
func TestRedisSlotOutlivesItsLease(t *testing.T) {
	c1, c2 := testRedis(t), testRedis(t)
	prefix := testPrefix(t, c1)
	a, b := newLeasedRedis(t, c1, prefix), newLeasedRedis(t, c2, prefix)
	const key = "prj_1/key_a"
	release, err := acquire(bg, a, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 4*testLease {
		if _, err := acquire(bg, b, key, 1); domain.KindOf(err) != domain.RateLimited {
			t.Fatalf("Acquire %v into the stream: %v; want RateLimited (its slot is held)", time.Since(start), err)
		}
		if ttl := c1.PTTL(bg, a.streamsKey(key)).Val(); ttl <= 0 || ttl > testLease {
			t.Fatalf("PTTL %v into the stream = %v; want in (0, %v]: a lease, renewed", time.Since(start), ttl, testLease)
		}
		time.Sleep(testLease / 5)
	}
	release()
	rb, err := acquire(bg, b, key, 1)
	if err != nil {
		t.Fatalf("Acquire after the release: %v", err)
	}
	rb()
}

// The slot of an instance that crashed (stopped renewing, never released)
// is free again within a lease, though the key keeps being asked for; the
// slots of live holders stay.
func TestRedisCrashedHoldersSlotIsFreed(t *testing.T) {
	c1, c2 := testRedis(t), testRedis(t)
	prefix := testPrefix(t, c1)
	crashing, live := newLeasedRedis(t, c1, prefix), newLeasedRedis(t, c2, prefix)
	const key, other = "prj_1/key_a", "prj_1/key_b"

	rOther, err := acquire(bg, live, other, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(bg, crashing, key, 1); err != nil {
		t.Fatal(err)
	}
	// The key keeps streaming for over a lease: the slot stays taken.
	for start := time.Now(); time.Since(start) < testLease+testLease/2; time.Sleep(testLease / 5) {
		if _, err := acquire(bg, live, key, 1); domain.KindOf(err) != domain.RateLimited {
			t.Fatalf("Acquire while the holder is alive: %v; want RateLimited", err)
		}
	}
	crashing.crash()
	crashed := time.Now()
	waitFor(t, testLease, "the crashed limiter's refresher to end", func() bool {
		return crashing.refreshersRunning() == 0
	})
	// Within half a lease of the crash the lease runs on (a loaded machine
	// may take longer than that to get here: then it may be over).
	early, err := acquire(bg, live, key, 1)
	if after := time.Since(crashed); domain.KindOf(err) != domain.RateLimited && after < testLease/2 {
		t.Fatalf("Acquire %v after the crash: %v; want RateLimited (the lease runs on)", after, err)
	}
	if err == nil {
		early()
	}
	var freed time.Duration
	waitFor(t, 2*testLease, "the crashed holder's slot to come back", func() bool {
		r, err := acquire(bg, live, key, 1)
		if err != nil {
			if domain.KindOf(err) != domain.RateLimited {
				t.Fatalf("Acquire: %v", err)
			}
			return false
		}
		freed = time.Since(crashed)
		r()
		return true
	})
	if max := testLease + testLease/2; freed > max {
		t.Errorf("the crashed holder's slot came back %v after the crash; want within about a lease (%v)", freed, max)
	}

	// The live holder's slot of another key outlived the crashed one's lease.
	if _, err := acquire(bg, crashing, other, 1); domain.KindOf(err) != domain.RateLimited {
		t.Fatalf("Acquire of the other key: %v; want RateLimited (its holder is alive)", err)
	}
	rOther()
	if _, err := acquire(bg, crashing, other, 1); err != nil {
		t.Fatalf("Acquire of the other key after its release: %v", err)
	}
}

// A release after its slot expired gives back nothing: not a slot another
// stream took since.
func TestRedisReleaseAfterExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expire func(t *testing.T, c *redis.Client, r *Redis, key string)
	}{
		{"KeyExpired", func(t *testing.T, c *redis.Client, r *Redis, key string) {
			c.Del(bg, r.streamsKey(key))
		}},
		{"LeaseRanOut", func(t *testing.T, c *redis.Client, r *Redis, key string) {
			r.crash()
			waitFor(t, 2*testLease, "the slot to expire", func() bool {
				return c.Exists(bg, r.streamsKey(key)).Val() == 0
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testRedis(t)
			prefix := testPrefix(t, c)
			a, b := newLeasedRedis(t, c, prefix), newLeasedRedis(t, c, prefix)
			const key = "prj_1/key_a"
			ra, err := acquire(bg, a, key, 1)
			if err != nil {
				t.Fatal(err)
			}
			tc.expire(t, c, a, key)
			rb, err := acquire(bg, b, key, 1)
			if err != nil {
				t.Fatalf("Acquire after the slot expired: %v", err)
			}
			ra()
			if _, err := acquire(bg, a, key, 1); domain.KindOf(err) != domain.RateLimited {
				t.Fatalf("Acquire after the late release: %v; want RateLimited (the release took back the other stream's slot)", err)
			}
			rb()
			if _, err := acquire(bg, a, key, 1); err != nil {
				t.Fatalf("Acquire after both releases: %v", err)
			}
		})
	}
}

// A renewal puts back the slots Redis lost while their streams run (one
// expired while the refresher stalled past a lease, a key deleted as by a
// Redis restart without persistence): they count again, and refuse other
// streams, until released.
func TestRedisRenewalPutsBackLostSlots(t *testing.T) {
	c := testRedis(t)
	prefix := testPrefix(t, c)
	a, b := newLeasedRedis(t, c, prefix), newLeasedRedis(t, c, prefix)
	const key, gone = "prj_1/key_a", "prj_1/key_b"
	ra, err := acquire(bg, a, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	rg, err := acquire(bg, a, gone, 1)
	if err != nil {
		t.Fatal(err)
	}
	k := a.streamsKey(key)
	ids, err := c.ZRange(bg, k, 0, -1).Result()
	if err != nil || len(ids) != 1 {
		t.Fatalf("slots of %s = %v, %v; want one", k, ids, err)
	}
	// Expired a second ago, as when the refresher stalled for over a lease.
	past := float64(time.Now().Add(-time.Second).UnixMilli())
	if err := c.ZAddXX(bg, k, redis.Z{Score: past, Member: ids[0]}).Err(); err != nil {
		t.Fatal(err)
	}
	c.Del(bg, a.streamsKey(gone))
	waitRenewals(t, a, 2)

	if score, err := c.ZScore(bg, k, ids[0]).Result(); err != nil || score <= float64(time.Now().UnixMilli()) {
		t.Errorf("ZSCORE of the expired slot after renewals = %v, %v; want a lease ahead", score, err)
	}
	for _, k := range []string{key, gone} {
		if _, err := acquire(bg, b, k, 1); domain.KindOf(err) != domain.RateLimited {
			t.Errorf("Acquire of %s, whose stream still runs: %v; want RateLimited", k, err)
		}
	}
	ra()
	rg()
	for _, k := range []string{key, gone} {
		rb, err := acquire(bg, b, k, 1)
		if err != nil {
			t.Errorf("Acquire of %s after its stream's release: %v", k, err)
			continue
		}
		rb()
	}
}

// A stream admitted while Redis was skipped (the breaker open after a
// failure) holds its slot all the same: once Redis answers, the renewals
// put it there, and it refuses another instance's stream beyond the limit.
func TestRedisSlotTakenWhileSkippedCountsOnceRedisAnswers(t *testing.T) {
	c := testRedis(t)
	prefix := testPrefix(t, c)
	r, lose, _, brClock := newFaultyRedis(t, prefix)
	r.StreamLease = testLease
	other := newLeasedRedis(t, c, prefix)
	const key = "prj_1/key_a"

	lose.Store(true)
	if err := allow(bg, r, []domain.Budget{project(1, 0)}); err != nil { // fails open, and opens the breaker
		t.Fatal(err)
	}
	lose.Store(false)
	release, err := acquire(bg, r, key, 1) // skipped: allowed, uncounted
	if err != nil {
		t.Fatal(err)
	}
	if n := c.ZCard(bg, r.streamsKey(key)).Val(); n != 0 {
		t.Fatalf("%d slots in Redis while it is skipped; want none", n)
	}
	brClock.Add(breakerMax) // Redis is used again
	waitFor(t, 4*testLease, "the slot in Redis", func() bool { return c.ZCard(bg, r.streamsKey(key)).Val() == 1 })
	if _, err := acquire(bg, other, key, 1); domain.KindOf(err) != domain.RateLimited {
		t.Errorf("another instance's Acquire while the stream runs: %v; want RateLimited", err)
	}
	release()
	ro, err := acquire(bg, other, key, 1)
	if err != nil {
		t.Fatalf("Acquire after the release: %v", err)
	}
	ro()
}

// A slot a renewal round put back after its stream released it (the
// release's ZREM first, the renewal's ZADD after) is freed at once, not
// left taken for a lease.
func TestRedisSlotReleasedDuringARenewalIsFreed(t *testing.T) {
	c := testRedis(t)
	prefix := testPrefix(t, c)
	a := newLeasedRedis(t, c, prefix)
	const key = "prj_1/key_a"
	k := a.streamsKey(key)
	release, err := acquire(bg, a, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	ids := c.ZRange(bg, k, 0, -1).Val()
	release()
	// The round that had read the slot as held puts it back, then finds
	// it released.
	c.ZAdd(bg, k, redis.Z{Score: float64(time.Now().Add(testLease).UnixMilli()), Member: ids[0]})
	a.orphanReleased(map[string][]any{k: {ids[0]}})
	waitFor(t, testLease/2, "the slot freed", func() bool { return c.ZCard(bg, k).Val() == 0 })
}

// One refresher per limiter renews all held slots; it runs only while a
// slot is held, and starts again with the next one.
func TestRedisRefresherRunsOnlyWhileSlotsAreHeld(t *testing.T) {
	c := testRedis(t)
	r := newLeasedRedis(t, c, testPrefix(t, c))
	running := func(want int, when string) {
		t.Helper()
		if n := r.refreshersRunning(); n != want {
			t.Fatalf("%s: %d refreshers running; want %d", when, n, want)
		}
	}
	stopped := func(when string) {
		t.Helper()
		waitFor(t, testLease, "the refresher to end "+when, func() bool { return r.refreshersRunning() == 0 })
	}

	running(0, "before any Acquire")
	unlimited, err := acquire(bg, r, "k1", 0)
	if err != nil {
		t.Fatal(err)
	}
	unlimited()
	running(0, "after an unlimited Acquire")

	r1, err := acquire(bg, r, "k1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(bg, r, "k1", 1); domain.KindOf(err) != domain.RateLimited {
		t.Fatalf("second Acquire of k1: %v; want RateLimited", err)
	}
	r2, err := acquire(bg, r, "k2", 2)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := acquire(bg, r, "k2", 2)
	if err != nil {
		t.Fatal(err)
	}
	running(1, "with three slots of two keys held")
	r1()
	waitRenewals(t, r, 2)
	running(1, "with two slots still held")
	if ttl := c.PTTL(bg, r.streamsKey("k2")).Val(); ttl <= 0 || ttl > testLease {
		t.Errorf("PTTL of the held k2 = %v; want in (0, %v]", ttl, testLease)
	}
	if n := c.Exists(bg, r.streamsKey("k1")).Val(); n != 0 {
		t.Errorf("the released k1 exists after renewals; want it gone")
	}
	r2()
	r3()
	stopped("after the last release")
	r3()
	running(0, "after a second release")

	// It starts again, once, under concurrent streams, and ends with them.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				release, err := acquire(bg, r, "k3", 100)
				if err != nil {
					t.Error(err)
					return
				}
				if n := r.refreshersRunning(); n != 1 {
					t.Errorf("%d refreshers running while a slot is held; want 1", n)
				}
				release()
			}
		})
	}
	wg.Wait()
	stopped("after concurrent streams")
}

// A closed client ends the refresher, though slots are still held.
func TestRedisRefresherEndsWithTheClient(t *testing.T) {
	testRedis(t) // skips (or fails on CI) without Redis
	opts, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	prefix := testPrefix(t, testRedis(t))
	r := NewRedis(c, prefix)
	r.Logger = slog.New(slog.DiscardHandler) // the renewals on a closed client warn
	r.StreamLease = testLease
	if _, err := acquire(bg, r, "prj_1/key_a", 1); err != nil {
		t.Fatal(err)
	}
	if n := r.refreshersRunning(); n != 1 {
		t.Fatalf("%d refreshers running; want 1", n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*testLease, "the refresher to end after Close", func() bool { return r.refreshersRunning() == 0 })
}

// faultyReplies is a go-redis hook that, while lose is set, lets each
// command (but a connection's set-up) run on Redis and then loses its reply (as when Redis paused past
// the read timeout and ran the command once it woke), and while drop is
// set, fails each command without sending it.
type faultyReplies struct{ lose, drop *atomic.Bool }

// newFaultyRedis is a limiter on prefix whose client faultyReplies makes
// lose or drop, on a breaker clock of the test's (the faults are warned
// of, to a logger that discards them).
func newFaultyRedis(t *testing.T, prefix string) (r *Redis, lose, drop *atomic.Bool, brClock *fakeClock) {
	t.Helper()
	opts, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	faulty := redis.NewClient(opts)
	t.Cleanup(func() { faulty.Close() })
	lose, drop = new(atomic.Bool), new(atomic.Bool)
	faulty.AddHook(faultyReplies{lose, drop})
	r = NewRedis(faulty, prefix)
	r.Logger = slog.New(slog.DiscardHandler)
	brClock = newClock()
	r.br.now = brClock.Now
	return r, lose, drop, brClock
}

var errReplyLost = errors.New("i/o timeout (the test lost the reply)")

func (faultyReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h faultyReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hello" { // the connection's set-up
			return next(ctx, cmd)
		}
		if h.drop.Load() {
			cmd.SetErr(errReplyLost)
			return errReplyLost
		}
		err := next(ctx, cmd)
		if err == nil && h.lose.Load() {
			cmd.SetErr(errReplyLost)
			return errReplyLost
		}
		return err
	}
}

func (faultyReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A slot Redis took though the limiter never heard so (its reply lost), or
// whose release failed, is taken by no stream: the next Acquire of its key
// that reaches Redis frees it, rather than the key's streams being refused
// until its lease runs out (a minute by default) while each refusal says to
// retry in a second.
func TestRedisSlotNoStreamHoldsIsFreed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(r *Redis, lose, drop *atomic.Bool, key string)
	}{
		{"AcquireReplyLost", func(r *Redis, lose, _ *atomic.Bool, key string) {
			lose.Store(true)
			release, err := acquire(bg, r, key, 1) // fails open
			lose.Store(false)
			if err != nil {
				panic(err)
			}
			release()
		}},
		{"ReleaseFailed", func(r *Redis, _, drop *atomic.Bool, key string) {
			release, err := acquire(bg, r, key, 1)
			if err != nil {
				panic(err)
			}
			drop.Store(true)
			release()
			drop.Store(false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testRedis(t)
			r, lose, drop, brClock := newFaultyRedis(t, testPrefix(t, c))
			const key = "prj_1/key_a"
			tc.fault(r, lose, drop, key)
			if n := c.ZCard(bg, r.streamsKey(key)).Val(); n != 1 {
				t.Fatalf("%d slots taken in Redis after the fault; want the 1 no stream holds", n)
			}
			brClock.Add(breakerMax) // Redis is used again
			release, err := acquire(bg, r, key, 1)
			if err != nil {
				t.Fatalf("Acquire after the fault, with no stream open: %v; want the slot no stream holds freed", err)
			}
			if _, err := acquire(bg, r, key, 1); domain.KindOf(err) != domain.RateLimited {
				t.Fatalf("second Acquire while one stream is open = %v; want RateLimited", err)
			}
			release()
			if n := c.ZCard(bg, r.streamsKey(key)).Val(); n != 0 {
				t.Errorf("%d slots taken in Redis after the release; want none", n)
			}
		})
	}
}

// An orphaned slot is forgotten once Redis has let it go (orphanAge
// leases), even while Redis stays down and each Acquire of its key fails:
// an Acquire that cannot free the orphans it took puts them back as they
// were, not as orphaned anew, else a long outage would grow the list each
// Acquire copies, and the one that reaches Redis again would send it all.
func TestRedisOrphansAgeWhileRedisIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: each dial fails
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	r := NewRedis(client, "parley-test:rl:")
	r.Logger = slog.New(slog.DiscardHandler)
	r.StreamLease = 5 * time.Millisecond
	r.br.now = newClock().Now // after the first failure, the breaker stays open
	const key = "prj_1/key_a"
	r.orphan("lost", r.streamsKey(key))
	for deadline := time.Now().Add(orphanAge*r.lease() + 50*time.Millisecond); time.Now().Before(deadline); {
		if _, err := acquire(bg, r, key, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	r.takeOrphans(r.streamsKey("prj_1/key_b")) // forgets the orphans Redis has let go
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	if o, ok := r.orphans["lost"]; ok {
		t.Errorf("a slot orphaned %s ago (%d leases) is still to free; want it forgotten after %d leases",
			time.Since(o.at), time.Since(o.at)/r.lease(), orphanAge)
	}
}
