package llm

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestHoldsAsContains: holds answers as bytes.Contains of the quoted name.
func TestHoldsAsContains(t *testing.T) {
	names := append(keptNames[:], "other", "reason")
	pieces := []string{`"`, `reasoning`, `reasoning_details`, `error`, `prompt_cache_hit_tokens`, `extra_content`, `\"`, `x`, `{`, `:`, `_`, `"e`, `r"`, `""`}
	r := rand.New(rand.NewPCG(3, 4))
	for range 300_000 {
		var b []byte
		for range r.IntN(12) {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		cr := &capReader{all: b}
		for _, n := range names {
			if got, want := cr.holds(n), bytes.Contains(b, []byte(`"`+n+`"`)); got != want {
				t.Fatalf("%q holds %q = %v, want %v", b, n, got, want)
			}
		}
		// The body growing after a look is looked at again.
		cr.all = append(cr.all, `"error"`...)
		if !cr.holds("error") {
			t.Fatalf("%q: a grown body not looked at again", cr.all)
		}
	}
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning":"r"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"prompt_cache_hit_tokens":1}}`)
	cr := &capReader{all: body}
	for _, n := range names {
		if got, want := cr.holds(n), bytes.Contains(body, []byte(`"`+n+`"`)); got != want {
			t.Fatalf("holds %q = %v, want %v", n, got, want)
		}
	}
}
