// Package ratelimit implements domain.Limiter: fixed one-minute windows of
// request and token counters per budget, and concurrent-stream slots per
// budget (an API key's, a project's).
//
// Memory keeps the counters in the process (one instance); Redis keeps them
// in Redis so that every instance sharing the prefix shares the limits. The
// Redis limiter fails open: when Redis cannot be reached it allows the
// request and logs a warning, because limits must not take the service down,
// and it skips Redis until Redis answers again, so that an outage does not
// slow every request down either.
//
// A window is the unix minute of the limiter's clock (Now). With Redis, the
// window is part of each counter's key, so instances must have roughly
// synchronised clocks (NTP): a skew of s seconds lets requests within s of a
// minute's edge count against the neighbouring window. Stream slots are
// leases timed by the Redis server's clock, so they need no such agreement.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"regexp"
	"strings"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/redis/go-redis/v9"
)

// Window is the length of a rate-limit window.
const Window = time.Minute

// maxDebtWindows is how many windows after its own the tokens a window
// counted past its limit are carried into.
const maxDebtWindows = 60

// excess is what a window must carry into the windows after it once a
// completion settled (settle): of its tokens counted, those used rather
// than reserved for completions still running (tokens - reserved) past the
// limit, less what it carried already. A completion reserves its estimate
// when admitted, but what it uses counts when it ends and may be any
// number: what went past then waits in the minutes after (debt), so that
// over time a tokens-per-minute limit holds. Reservations are left out,
// as a completion still running may give its back.
func excess(tokens, reserved, carried, limit int) int {
	return max(tokens-reserved-limit-carried, 0)
}

// debt is how excess tokens go into the windows after their own: limit of
// them into each in turn, for at most maxDebtWindows.
func debt(excess, limit int) []int {
	var out []int
	for excess > 0 && len(out) < maxDebtWindows {
		a := min(excess, limit)
		out = append(out, a)
		excess -= a
	}
	return out
}

// full reports whether a window whose tokens counted are used refuses a
// request reserving reserve of limit: at the limit, or past it with the
// reservation, unless nothing is counted yet (a request larger than the
// limit must be admitted some time).
func full(used, limit, reserve int) bool {
	return used >= limit || used > 0 && used > limit-reserve
}

// step is a change to a budget's counts in window w: add to its tokens,
// release from its reservations outstanding (see settle).
type step struct {
	w            int64
	add, release int
}

// settle is how budget b's counts change when a request admitted with
// reservation r ends, in window w, having used tokens. While r's window
// lasts, one step there adds what it used beyond what r reserved, or
// fewer (what was reserved and not used is given back), and releases the
// reservation. Once r's window has ended, the reservation is released
// there as used (nothing comes back), so that that window carries what it
// then used past its limit, and what the request used beyond it is added
// in w. None for a budget without a token limit, nor when nothing changes.
func settle(b domain.Budget, tokens int, r domain.Reservation, w int64) []step {
	if b.TokensPerMinute <= 0 {
		return nil
	}
	held := r.Reserved(b)
	if w == r.Window {
		if add := max(tokens, 0) - held; add != 0 || held != 0 {
			return []step{{w, add, held}}
		}
		return nil
	}
	var steps []step
	if held > 0 {
		steps = append(steps, step{r.Window, 0, held})
	}
	if add := max(tokens-held, 0); add > 0 {
		steps = append(steps, step{w, add, 0})
	}
	return steps
}

// pastDebt is when a budget whose tokens refused a request reserving
// reserve in a window ending in left can admit it: at the end of that
// window, unless debt filled the windows after it too. next(k) is the
// tokens counted so far in the k-th window after (k from 1); the first
// with room admits.
func pastDebt(left time.Duration, limit, reserve int, next func(k int) int) time.Duration {
	for k := 1; k <= maxDebtWindows && full(next(k), limit, reserve); k++ {
		left += Window
	}
	return left
}

// latestPastDebt is the refusal of a request reserving reserve refused by
// the tokens of budget refused, one of budgets, in the window that ends in
// left: of the budgets whose tokens refuse it in that window (full with
// tokens(b, 0); tokens(b, k) is b's count k windows after), the one
// admitting it last (pastDebt), so that a client that waits that long is
// not refused by another (a key's own limit, lower than its project's,
// carries its debt longer).
func latestPastDebt(refused domain.Budget, budgets []domain.Budget, left time.Duration, reserve int, tokens func(b domain.Budget, k int) int) *domain.Error {
	last, wait := refused, left
	for _, b := range budgets {
		if b.TokensPerMinute <= 0 || !full(tokens(b, 0), b.TokensPerMinute, reserve) {
			continue
		}
		if d := pastDebt(left, b.TokensPerMinute, reserve, func(k int) int { return tokens(b, k) }); d > wait {
			last, wait = b, d
		}
	}
	return tokensRefusal(last, tokens(last, 0), reserve, wait)
}

// window returns the window (unix minute) of now and the time left until it
// ends, at least one second.
func window(now time.Time) (w int64, left time.Duration) {
	const secs = int64(Window / time.Second)
	w = now.Unix() / secs
	left = time.Unix((w+1)*secs, 0).Sub(now)
	if left < time.Second {
		left = time.Second
	}
	return w, left
}

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// subject names a budget in messages: "this project", "this project's key".
func subject(name string) string {
	switch name {
	case "project":
		return "this project"
	case "key":
		return "this project's key"
	case "":
		return "this budget"
	default:
		return "this " + name
	}
}

// limitName names the requests (tokens == false) or tokens limit of a
// budget named name: "project-requests-per-minute". The common names are
// constants: an admitted request names each of its limits.
func limitName(name string, tokens bool) string {
	switch {
	case name == "project" && !tokens:
		return "project-requests-per-minute"
	case name == "project":
		return "project-tokens-per-minute"
	case name == "key" && !tokens:
		return "key-requests-per-minute"
	case name == "key":
		return "key-tokens-per-minute"
	case name == "":
		name = "budget"
	}
	if tokens {
		return name + "-tokens-per-minute"
	}
	return name + "-requests-per-minute"
}

// limited reports whether any budget has a limit.
func limited(budgets []domain.Budget) bool {
	for _, b := range budgets {
		if b.RequestsPerMinute > 0 || b.TokensPerMinute > 0 {
			return true
		}
	}
	return false
}

// appendQuotas appends to qs the quotas of budget b, which has used
// requests (this one counted) and tokens in the window that ends in left.
func appendQuotas(qs []domain.Quota, b domain.Budget, requests, tokens int, left time.Duration) []domain.Quota {
	if b.RequestsPerMinute > 0 {
		qs = append(qs, domain.Quota{Name: limitName(b.Name, false), Limit: b.RequestsPerMinute,
			Remaining: max(b.RequestsPerMinute-requests, 0), Reset: left, Window: Window})
	}
	if b.TokensPerMinute > 0 {
		qs = append(qs, domain.Quota{Name: limitName(b.Name, true), Limit: b.TokensPerMinute,
			Remaining: max(b.TokensPerMinute-tokens, 0), Reset: left, Window: Window})
	}
	return qs
}

// tokensRefusal is refusal by b's tokens, of which used are counted in the
// window, of a request reserving reserve, with left until it can be
// admitted (pastDebt): its message says why, where the limit is not
// reached (the reservation does not fit) or the wait is past this window
// (debt), and its details what remains.
func tokensRefusal(b domain.Budget, used, reserve int, left time.Duration) *domain.Error {
	e := refusal(b, true, left)
	if used < b.TokensPerMinute {
		e.Message += fmt.Sprintf(" (this request reserves an estimated %d: its prompt, with maxTokens when set; %d are left)", reserve, b.TokensPerMinute-used)
		e.Details["remaining"] = b.TokensPerMinute - used
	}
	if left > Window {
		e.Message += " (tokens used past the limit count in the minutes after)"
	}
	return e
}

// refusal is the RateLimited error of budget b, whose requests (tokens ==
// false) or tokens are at their limit, with left until the window ends
// (or, for tokens, until the first window after it with room: pastDebt).
func refusal(b domain.Budget, tokens bool, left time.Duration) *domain.Error {
	unit, limit := "requests", b.RequestsPerMinute
	if tokens {
		unit, limit = "tokens", b.TokensPerMinute
	}
	noun := unit // in the message: "1 request per minute"
	if limit == 1 {
		noun = strings.TrimSuffix(unit, "s")
	}
	e := domain.Errorf(domain.RateLimited, "rate limit reached: %d %s per minute for %s; retry in %ds",
		limit, noun, subject(b.Name), seconds(left))
	e.RetryAfter = left
	e.Details = domain.RefusalDetails(domain.Quota{Name: limitName(b.Name, tokens), Limit: limit, Reset: left, Window: Window})
	return e
}

// A slot of open streams frees when a stream ends, at no set time, so a
// refusal and a quota say to look again in streamsReset.
const streamsReset = time.Second

// streamsLimit names the limit of s: "key-concurrent-streams" or
// "project-concurrent-streams".
func streamsLimit(s domain.Slots) string { return s.Name + "-concurrent-streams" }

// streamsQuota is the quota of Acquire once open of s's slots are taken,
// its own included.
func streamsQuota(s domain.Slots, open int) domain.Quota {
	return domain.Quota{Name: streamsLimit(s), Limit: s.Max, Remaining: max(s.Max-open, 0), Reset: streamsReset}
}

// streamsRefusal is the RateLimited error of Acquire when all of s's slots
// are taken.
func streamsRefusal(s domain.Slots) *domain.Error {
	whose := subject(s.Name)
	if s.Name == "key" {
		whose = "this API key"
	}
	e := domain.Errorf(domain.RateLimited, "too many open streams for %s (max %d); close one and retry", whose, s.Max)
	e.RetryAfter = streamsReset
	e.Details = domain.RefusalDetails(domain.Quota{Name: streamsLimit(s), Limit: s.Max, Reset: streamsReset})
	return e
}

func noop() {}

// Default timeouts of a Redis client, where the URL leaves them unset
// (zero): a call to a Redis that is down costs one attempt of at most about
// redisTimeout (a refused connection costs far less), and then the breaker
// of Redis skips it (see Redis), so only the calls in flight when Redis
// went, and one probe per backoff, pay it. A rate-limit check is a few
// microseconds of work on Redis; the margin is for a busy host, where a
// timeout would fail the limiter open for a backoff. A Redis far away, or
// slow to answer, needs the URL's dial_timeout, read_timeout or
// pool_timeout raised.
const redisTimeout = time.Second

// Open returns the limiter for url and a function that closes it:
// "" is a Memory limiter (one instance); "redis://…", "rediss://…" or
// "unix://…" is a Redis limiter under the prefix "parley:rl:", which fails
// open (allows and logs at warn on logger) while Redis does not answer.
//
// Open pings Redis (for up to a Redis timeout, see clientOptions). A Redis
// that does not answer is an outage, at start as later on: Open logs it at
// warn and returns the limiter failing open, which uses Redis once it
// answers (see Redis); otherwise a Redis restarting during a deploy would
// keep Parley down. A Redis that answers with an error (a wrong password,
// a database index it does not have) is a setting to fix, which no wait
// mends: Open fails, with Redis's reply. So does a malformed URL.
//
// With Redis, go-redis's own log lines go to logger at warn too; that
// setting is global to the process (see routeRedisLogs).
func Open(url string, logger *slog.Logger) (domain.Limiter, func() error, error) {
	if url == "" {
		return NewMemory(), func() error { return nil }, nil
	}
	opts, err := clientOptions(url)
	if err != nil {
		return nil, nil, err
	}
	routeRedisLogs(logger)
	client := redis.NewClient(opts)
	r := NewRedis(client, "parley:rl:")
	r.Logger = logger
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		if refusedByRedis(err) {
			_ = client.Close()
			return nil, nil, fmt.Errorf("ratelimit: Redis at %s refused the connection: %w", opts.Addr, err)
		}
		r.downAtStart(err)
	}
	return r, client.Close, nil
}

// CheckURL refuses a Redis URL that Open would refuse before it dials:
// a start checks it before it opens the database. "" (no Redis) is fine.
func CheckURL(url string) error {
	if url == "" {
		return nil
	}
	_, err := clientOptions(url)
	return err
}

// refusedByRedis reports whether err is Redis's own error reply, other
// than one it gives while it starts (LOADING): the URL's password or
// database is wrong, and stays wrong.
func refusedByRedis(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !strings.HasPrefix(re.Error(), "LOADING")
}

// urlScheme is a URL scheme's syntax (RFC 3986, section 3.1).
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*$`)

// clientOptions returns the go-redis options of a Redis URL, with defaults
// for a limiter where the URL leaves them unset: a dial, a read (and so a
// write, which follows it) and a wait for a pooled connection of at most
// redisTimeout, one dial attempt per connection and no retry of a failed
// command. A limiter fails open rather than wait: retries only make a call
// to a Redis that is down slower, and the breaker of Redis tries again. (A
// pool that stays exhausted for redisTimeout, all its connections busy, so
// counts as a failure too: the limiter then fails open for a backoff.)
func clientOptions(url string) (*redis.Options, error) {
	scheme, rest, found := strings.Cut(url, "://")
	switch {
	case scheme == "redis" || scheme == "rediss" || scheme == "unix":
	case !found || !urlScheme.MatchString(scheme):
		// Not a scheme but the start of the value, which may be
		// USER:PASSWORD@HOST: never quoted.
		return nil, errors.New("ratelimit: the Redis URL must start with redis://, rediss:// or unix:// (or be empty for in-memory)")
	default:
		return nil, fmt.Errorf("ratelimit: unsupported URL scheme %q (want redis://, rediss:// or unix://, or empty for in-memory)", scheme)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		// A *url.Error quotes the URL, password and all; keep only its
		// cause, and not even that when the URL has credentials: a
		// password with an unencoded / ? or # ends the host early, and
		// the cause quotes the rest of the password as the port.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			if strings.Contains(rest, "@") {
				return nil, errors.New("ratelimit: invalid Redis URL: it does not parse as a URL; write it as " +
					"redis://[USER:PASSWORD@]HOST:PORT[/DB], with any of : / ? # @ % in the user or password percent-encoded")
			}
			err = ue.Err
		}
		return nil, fmt.Errorf("ratelimit: invalid Redis URL: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = redisTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = redisTimeout
	}
	if opts.PoolTimeout == 0 {
		opts.PoolTimeout = redisTimeout
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1 // none; 0 would mean go-redis's 3
	}
	// The URL cannot set it: go-redis would dial 5 times, 100ms apart.
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	return opts, nil
}
