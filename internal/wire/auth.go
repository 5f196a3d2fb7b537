package wire

import (
	"net/http"
	"strings"

	"github.com/parleyhq/parley/domain"
)

// BearerKey returns the key of a request's one "Authorization: Bearer
// <key>" header, as the REST API and MCP over HTTP take it; without one,
// or with several (which key would answer?), an error of kind
// Unauthenticated saying what to send.
func BearerKey(h http.Header) (string, error) {
	if len(h.Values("Authorization")) > 1 {
		return "", domain.Errorf(domain.Unauthenticated, "the request has several Authorization headers; send one, 'Authorization: Bearer <key>'")
	}
	scheme, key, ok := strings.Cut(h.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", domain.Errorf(domain.Unauthenticated, "authentication required: send an API key as 'Authorization: Bearer <key>'")
	}
	return key, nil
}

// Challenge is the WWW-Authenticate header of a 401 answered to a request
// with headers h (RFC 6750 §3.1): a key sent but unknown, expired or
// revoked is an invalid token; several Authorization headers are an
// invalid request; no key is a plain challenge.
func Challenge(h http.Header) string {
	const challenge = `Bearer realm="parley"`
	if len(h.Values("Authorization")) > 1 {
		return challenge + `, error="invalid_request"`
	}
	if _, err := BearerKey(h); err == nil {
		return challenge + `, error="invalid_token"`
	}
	return challenge
}
