package wire

import (
	"net/http"
	"testing"

	"github.com/parleyhq/parley/domain"
)

func TestBearerKeyAndChallenge(t *testing.T) {
	for _, tc := range []struct {
		headers   []string
		key       string
		challenge string
	}{
		{nil, "", `Bearer realm="parley"`},
		{[]string{"Bearer pk_1"}, "pk_1", `Bearer realm="parley", error="invalid_token"`},
		{[]string{"bearer   pk_1 "}, "pk_1", `Bearer realm="parley", error="invalid_token"`},
		{[]string{"Bearer "}, "", `Bearer realm="parley"`},
		{[]string{"Basic dXNlcjpwYXNz"}, "", `Bearer realm="parley"`},
		{[]string{"pk_1"}, "", `Bearer realm="parley"`},
		{[]string{"Bearer pk_1", "Bearer pk_2"}, "", `Bearer realm="parley", error="invalid_request"`},
	} {
		h := http.Header{}
		for _, v := range tc.headers {
			h.Add("Authorization", v)
		}
		key, err := BearerKey(h)
		if key != tc.key || (err == nil) != (tc.key != "") || err != nil && domain.KindOf(err) != domain.Unauthenticated {
			t.Errorf("BearerKey(%q) = %q, %v; want %q", tc.headers, key, err, tc.key)
		}
		if got := Challenge(h); got != tc.challenge {
			t.Errorf("Challenge(%q) = %q, want %q", tc.headers, got, tc.challenge)
		}
	}
}
