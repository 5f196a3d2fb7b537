package rest

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/parleyhq/parley/domain"
)

// setQuotaHeaders sets the RateLimit-* headers of an admitted completion
// from what is left of the limits that admitted it (as of now: Quota.As),
// in the fields of
// draft-ietf-httpapi-ratelimit-headers-06, as a refusal's (handleError):
// RateLimit-Limit, -Remaining and -Reset of the limit closest to running
// out, the one with the smallest share of its Limit remaining (on a tie
// the first in quotas' order: the project's before the key's, requests
// before tokens, open streams last), and RateLimit-Policy listing every
// limit, that one first. Without quotas (no limit applied) it sets
// nothing.
//
// Shares, not counts: the limits count requests, tokens and streams, so
// 598 of 600 requests left is further from a 429 than 980 of 1,000
// tokens, and a client pacing itself by the headers must see the tokens.
func setQuotaHeaders(h http.Header, quotas []domain.Quota) {
	if len(quotas) == 0 {
		return
	}
	now := time.Now()
	quotas = slices.Clone(quotas)
	for i := range quotas {
		quotas[i] = quotas[i].As(now)
	}
	closest := 0
	for i, q := range quotas {
		if lessLeft(q, quotas[closest]) {
			closest = i
		}
	}
	c := quotas[closest]
	setLimitHeaders(h, c)
	policy := appendPolicy(make([]byte, 0, 48*len(quotas)), c)
	for i, q := range quotas {
		if i != closest {
			policy = appendPolicy(append(policy, ", "...), q)
		}
	}
	h.Set("RateLimit-Policy", string(policy))
}

// setLimitHeaders sets RateLimit-Limit, -Remaining and -Reset (whole
// seconds, at least 1) of the limit q, in the fields of
// draft-ietf-httpapi-ratelimit-headers-06 (-07 has one RateLimit field for
// the three): an admitted completion's, of the limit closest to running
// out, and a refusal's (handleError), of the limit that refused.
func setLimitHeaders(h http.Header, q domain.Quota) {
	h.Set("RateLimit-Limit", strconv.Itoa(q.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(q.Remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(max(int((q.Reset+time.Second-1)/time.Second), 1)))
}

// lessLeft reports whether a has a smaller share of its limit left than b
// (limits are positive: 0 means none, and none is not a quota).
func lessLeft(a, b domain.Quota) bool {
	return int64(a.Remaining)*int64(b.Limit) < int64(b.Remaining)*int64(a.Limit)
}

// appendPolicy appends q as an item of RateLimit-Policy: its limit, its
// window in seconds when it has one, and its name:
// `600;w=60;comment="project-requests-per-minute"`.
func appendPolicy(b []byte, q domain.Quota) []byte {
	b = strconv.AppendInt(b, int64(q.Limit), 10)
	if q.Window > 0 {
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(q.Window/time.Second), 10)
	}
	b = append(b, ";comment="...)
	return strconv.AppendQuote(b, q.Name)
}
