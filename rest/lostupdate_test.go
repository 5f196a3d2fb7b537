package rest_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// TestPatchKeepsOtherInstancesWrites: a PATCH changes only the fields it
// sends. Two instances share a database; one caches a provider and a chat
// (any read does), the other replaces the provider's key and the chat's
// system message, and then the first PATCHes another field. The key and
// the system message must stay as the second instance set them: writing
// the cached copy back would restore a key its owner just rotated out.
func TestPatchKeepsOtherInstancesWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		d := twoInstances(t, st)
		a, b, prov, chat := d.a, d.b, d.prov, d.chat

		b.cacheAll(prov, chat)
		a.must(200, "PATCH", prov, a.admin, map[string]any{"apiKey": "sk-rotated-key-after-a-leak-9876"})
		a.must(200, "PATCH", chat, a.admin, map[string]any{"systemMessage": "new system message"})
		b.must(200, "PATCH", prov, b.admin, map[string]any{"defaultModel": "other-model"})
		b.must(200, "PATCH", chat, b.admin, map[string]any{"model": "other-model"})

		// b wrote last, so its cache holds neither; a's may, for up to its TTL.
		p := b.must(200, "GET", prov, b.admin, nil)
		if hint, _ := p["apiKeyHint"].(string); !strings.HasSuffix(hint, "9876") || p["defaultModel"] != "other-model" {
			t.Errorf("provider after both PATCHes: apiKeyHint %v, defaultModel %v; want the rotated key (…9876) and other-model", p["apiKeyHint"], p["defaultModel"])
		}
		c := b.must(200, "GET", chat, b.admin, nil)
		if c["systemMessage"] != "new system message" || c["model"] != "other-model" {
			t.Errorf("chat after both PATCHes: systemMessage %q, model %q; want both changes", c["systemMessage"], c["model"])
		}
	})
}

// TestPatchBackToACachedValueTakesEffect: a PATCH that sets a field back
// to the value this instance has cached, after another instance changed
// it, must change it back. Judged against the cached copy it would look
// like one that changes nothing, answer 200 with the value sent, and
// write nothing: the other instance's value would stay, and be what every
// instance serves and sends upstream.
func TestPatchBackToACachedValueTakesEffect(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		d := twoInstances(t, st)
		a, b, prov, chat := d.a, d.b, d.prov, d.chat

		a.cacheAll(prov, chat)
		b.must(200, "PATCH", prov, b.admin, map[string]any{"defaultModel": "set-on-b"})
		b.must(200, "PATCH", chat, b.admin, map[string]any{"systemMessage": "set on b", "model": "set-on-b"})
		// Once b answered, a sets them back.
		p := a.must(200, "PATCH", prov, a.admin, map[string]any{"defaultModel": "fake-default"})
		c := a.must(200, "PATCH", chat, a.admin, map[string]any{"systemMessage": "You are a test.", "model": ""})
		if p["defaultModel"] != "fake-default" || c["systemMessage"] != "You are a test." || c["model"] != "" {
			t.Fatalf("a answered defaultModel %v, systemMessage %q, model %q", p["defaultModel"], c["systemMessage"], c["model"])
		}

		// A third instance, which has nothing cached, reads what is stored.
		fresh := d.start()
		p = fresh.must(200, "GET", prov, fresh.admin, nil)
		c = fresh.must(200, "GET", chat, fresh.admin, nil)
		if p["defaultModel"] != "fake-default" || c["systemMessage"] != "You are a test." || c["model"] != "" {
			t.Errorf("after a's PATCHes: defaultModel %v, systemMessage %q, model %q; want a's values, not b's",
				p["defaultModel"], c["systemMessage"], c["model"])
		}
		if r := fresh.complete(fresh.admin, d.w.chat); r.Status != 200 {
			t.Fatalf("completion = %d %s", r.Status, r.Body)
		}
		if got := lastUpstreamBody(t, a)["model"]; got != "fake-default" { // a's upstream serves w's provider
			t.Errorf("model sent upstream = %v, want fake-default", got)
		}
	})
}

// TestConcurrentPatchesOfDifferentFields: PATCHes of different fields of
// one resource, sent at once, all take effect.
func TestConcurrentPatchesOfDifferentFields(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "d", "content": "c"})["id"].(string)
		for _, tc := range []struct {
			path   string
			fields map[string]any
		}{
			{"/api/v1/chats/" + w.chat, map[string]any{"name": "n", "systemMessage": "s", "model": "m"}},
			{"/api/v1/ai-providers/" + w.provider, map[string]any{"name": "n", "defaultModel": "m"}},
			{"/api/v1/documents/" + doc, map[string]any{"name": "n", "content": "c"}},
			{"/api/v1/projects/" + w.project, map[string]any{"name": "n", "description": "d"}},
		} {
			for i := range 10 {
				var wg sync.WaitGroup
				for f, v := range tc.fields {
					wg.Go(func() {
						r, err := h.send("PATCH", tc.path, h.admin, map[string]any{f: v.(string) + string(rune('0'+i))})
						if err != nil || r.Status != 200 {
							t.Errorf("PATCH %s %s: %v %v", tc.path, f, err, r)
						}
					})
				}
				wg.Wait()
				got := h.must(200, "GET", tc.path, h.admin, nil)
				for f, v := range tc.fields {
					if want := v.(string) + string(rune('0'+i)); got[f] != want {
						t.Fatalf("%s, round %d: %s = %q, want %q (a concurrent PATCH wrote it back)", tc.path, i, f, got[f], want)
					}
				}
			}
		}
	})
}

// TestGetShowsAnotherInstancesWrite: a client that changes a chat or a
// provider through one instance and reads it back through another, as a
// load balancer sends them, reads its change (and a deleted chat is gone),
// though the other instance's completions may use its cached copy for up
// to its TTL.
func TestGetShowsAnotherInstancesWrite(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		d := twoInstances(t, st)
		a, b, prov, chat := d.a, d.b, d.prov, d.chat
		b.cacheAll(prov, chat)
		a.must(200, "PATCH", prov, a.admin, map[string]any{"defaultModel": "changed-model"})
		a.must(200, "PATCH", chat, a.admin, map[string]any{"name": "renamed"})
		if got := b.must(200, "GET", prov, b.admin, nil)["defaultModel"]; got != "changed-model" {
			t.Errorf("GET through b right after a's PATCH: defaultModel %v; want changed-model", got)
		}
		if got := b.must(200, "GET", chat, b.admin, nil)["name"]; got != "renamed" {
			t.Errorf("GET through b right after a's PATCH: name %v; want renamed", got)
		}
		a.must(200, "DELETE", chat, a.admin, nil)
		if r := b.call("GET", chat, b.admin, nil); r.Status != 404 {
			t.Errorf("GET through b right after a's DELETE = %d %s; want 404", r.Status, r.Body)
		}
	})
}

// pair is two instances of one deployment on one database, and the
// paths of a provider and a chat made through a.
type pair struct {
	a, b       *harness
	w          world // made through a
	prov, chat string
	start      func() *harness // another instance of the deployment
}

// twoInstances starts two instances on st, with the one secret key that a
// deployment's instances share, and makes a world through the first.
func twoInstances(t *testing.T, st *store.Store) pair {
	key := secret.GenerateKey()
	start := func() *harness { return newHarness(t, st, func(c *app.Config) { c.SecretKey = key }) }
	a, b := start(), start()
	w := a.world()
	return pair{a: a, b: b, w: w, prov: "/api/v1/ai-providers/" + w.provider, chat: "/api/v1/chats/" + w.chat, start: start}
}

// cacheAll has h GET each path, so that its cache holds what they name.
func (h *harness) cacheAll(paths ...string) {
	h.t.Helper()
	for _, p := range paths {
		h.must(200, "GET", p, h.admin, nil)
	}
}
