package rest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policies"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/store"
)

// usageGroup is one total of a usage report, by its key.
type usageGroup struct{ prompt, completion, total, requests, estimated, cached, cacheWrite, reasoning float64 }

// usagePage is one page of a usage report.
type usagePage struct {
	from, to string
	keys     []string // in the order of the page
	totals   map[string]usageGroup
	next     any // nextCursor as decoded: a string, or nil for null
	hasNext  bool
}

func (h *harness) usagePage(t *testing.T, project, query string) usagePage {
	t.Helper()
	r := h.call("GET", "/api/v1/projects/"+project+"/usage?"+query, h.admin, nil)
	if r.Status != 200 {
		t.Fatalf("usage?%s = %d %s; want 200", query, r.Status, r.Body)
	}
	got := r.JSON()
	next, ok := got["nextCursor"]
	if !ok {
		t.Fatalf("usage?%s has no nextCursor: %v", query, got)
	}
	p := usagePage{from: got["from"].(string), to: got["to"].(string), totals: map[string]usageGroup{}, next: next}
	for _, d := range got["data"].([]any) {
		d := d.(map[string]any)
		key, _ := d["key"].(string) // none: the group of stateless completions, by chat
		if _, dup := p.totals[key]; dup {
			t.Errorf("usage?%s holds the group %q twice", query, key)
		}
		p.keys = append(p.keys, key)
		p.totals[key] = usageGroup{d["promptTokens"].(float64), d["completionTokens"].(float64), d["totalTokens"].(float64), d["requests"].(float64),
			d["estimatedTokens"].(float64), d["cachedTokens"].(float64), d["cacheWriteTokens"].(float64), d["reasoningTokens"].(float64)}
	}
	_, p.hasNext = next.(string)
	return p
}

// walkUsage reads every page of the report query asks for, limit groups at
// a time (0: the default limit), and checks each page: no more groups than
// the limit, a full page unless it is the last, keys in ascending byte
// order across pages, no group twice, the same period on every page, and
// null as the last page's nextCursor. It returns the union of the pages.
func (h *harness) walkUsage(t *testing.T, project, query string, limit int) (map[string]usageGroup, int) {
	t.Helper()
	want := limit
	if limit == 0 {
		want = domain.DefaultPageLimit
	} else {
		query += fmt.Sprintf("&limit=%d", limit)
	}
	all := map[string]usageGroup{}
	var last *string
	var from, to string
	cursor := ""
	pages := 0
	for ; ; pages++ {
		if pages > 200 {
			t.Fatalf("usage?%s: paging does not end", query)
		}
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := h.usagePage(t, project, q)
		if pages == 0 {
			from, to = p.from, p.to
		} else if p.from != from || p.to != to {
			t.Errorf("usage?%s page %d covers %s to %s; the first covered %s to %s", query, pages, p.from, p.to, from, to)
		}
		if len(p.keys) > want || (p.hasNext && len(p.keys) != want) {
			t.Errorf("usage?%s page %d has %d groups (more follow: %v); want %d", query, pages, len(p.keys), p.hasNext, want)
		}
		for _, k := range p.keys {
			if last != nil && k <= *last {
				t.Errorf("usage?%s page %d: group %q comes after %q; want keys in ascending byte order", query, pages, k, *last)
			}
			if _, dup := all[k]; dup {
				t.Errorf("usage?%s: group %q on two pages", query, k)
			}
			all[k] = p.totals[k]
			last = &k
		}
		if !p.hasNext {
			if p.next != nil {
				t.Errorf("usage?%s last page's nextCursor = %#v; want null", query, p.next)
			}
			return all, pages + 1
		}
		cursor = p.next.(string)
	}
}

// TestUsageReportPages pages through each grouping of a report with more
// groups than a page holds, and checks that the pages together are the
// report unpaged: every group once, with its totals.
func TestUsageReportPages(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		// Keys that a careless cursor would mangle (":" separates its
		// parts, "+", "%" and "/" are special in URLs and base64), that
		// sort apart by byte and by locale ("Z" before "_" before "a"), and
		// beyond ASCII.
		models := []string{"gpt-4o", "GPT-4o", "claude:3:opus", "a b", "a+b", "a%2Fb", "a/b", "é-model", "Z", "z", "_x", "0", "~", "日本語"}
		for len(models) < 27 {
			models = append(models, fmt.Sprintf("m-%02d", len(models)))
		}
		chats := []string{""} // stateless completions
		keys := []string{}
		for range 23 {
			chats = append(chats, domain.NewID(domain.PrefixChat))
			keys = append(keys, domain.NewID(domain.PrefixKey))
		}
		providers := []string{w.provider, domain.NewID(domain.PrefixProvider), domain.NewID(domain.PrefixProvider)}
		outcomes := []domain.Outcome{domain.OutcomeOK, domain.OutcomeError, domain.OutcomeUpstreamError, domain.OutcomeClientDisconnect, domain.OutcomeTruncated, domain.OutcomeInterrupted, domain.OutcomeNotStored}

		t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		want := map[domain.UsageGroupBy]map[string]usageGroup{}
		add := func(g domain.UsageGroupBy, key string, u domain.Usage) {
			if want[g] == nil {
				want[g] = map[string]usageGroup{}
			}
			s := want[g][key]
			s.prompt += float64(u.PromptTokens)
			s.completion += float64(u.CompletionTokens)
			s.total += float64(u.TotalTokens)
			s.cached += float64(u.CachedTokens)
			s.cacheWrite += float64(u.CacheWriteTokens)
			s.reasoning += float64(u.ReasoningTokens)
			s.requests++
			if u.Estimated {
				s.estimated += float64(u.TotalTokens)
			}
			want[g][key] = s
		}
		var records []domain.UsageRecord
		for i := range 81 {
			r := domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.project,
				Model: models[i%len(models)], ChatID: chats[i%len(chats)], KeyID: keys[i%len(keys)],
				AIProviderID: providers[i%len(providers)], Outcome: outcomes[i%len(outcomes)],
				Usage: domain.Usage{PromptTokens: i + 1, CompletionTokens: 2 * i, TotalTokens: 3*i + 1, Estimated: i%5 == 2,
					CachedTokens: i / 2, CacheWriteTokens: i % 4, ReasoningTokens: i % 3},
				// Eight hours apart: 28 UTC days within the report's
				// default 30, more than a page holds.
				CreatedAt: t0.Add(-time.Duration(i) * 8 * time.Hour)}
			records = append(records, r)
			add(domain.GroupByModel, r.Model, r.Usage)
			add(domain.GroupByChat, r.ChatID, r.Usage)
			add(domain.GroupByKey, r.KeyID, r.Usage)
			add(domain.GroupByProvider, r.AIProviderID, r.Usage)
			add(domain.GroupByOutcome, string(r.Outcome), r.Usage)
			add(domain.GroupByDay, r.CreatedAt.Format(time.DateOnly), r.Usage)
			add("", "", r.Usage)
		}
		if err := h.app.Store.InsertUsage(context.Background(), records); err != nil {
			t.Fatal(err)
		}

		for _, g := range domain.UsageGroupings {
			for _, limit := range []int{0, 7, 100} {
				t.Run(fmt.Sprintf("%s limit %d", g, limit), func(t *testing.T) {
					got, pages := h.walkUsage(t, w.project, "groupBy="+string(g), limit)
					if !maps.Equal(got, want[g]) {
						t.Errorf("the pages of usage by %s hold\n%v\nwant\n%v", g, got, want[g])
					}
					per := limit
					if per == 0 {
						per = domain.DefaultPageLimit
					}
					if n := (len(want[g]) + per - 1) / per; pages != n {
						t.Errorf("usage by %s in pages of %d took %d pages; want %d", g, per, pages, n)
					}
				})
			}
		}
		// One group a page: the first, by chat, is the stateless
		// completions' group, whose key is empty, and the next page must
		// still come after it.
		t.Run("by chat one a page", func(t *testing.T) {
			got, pages := h.walkUsage(t, w.project, "groupBy=chat", 1)
			if !maps.Equal(got, want[domain.GroupByChat]) || pages != len(chats) {
				t.Errorf("usage by chat a group a page: %d pages holding\n%v\nwant %d holding\n%v", pages, got, len(chats), want[domain.GroupByChat])
			}
		})
		// Ungrouped, the report is one total: one page, its nextCursor null.
		t.Run("ungrouped", func(t *testing.T) {
			p := h.usagePage(t, w.project, "limit=1")
			if !maps.Equal(p.totals, want[""]) || p.next != nil {
				t.Errorf("ungrouped usage, limit 1 = %v, nextCursor %#v; want %v and null", p.totals, p.next, want[""])
			}
		})
		// A period with no usage is one empty last page.
		t.Run("empty", func(t *testing.T) {
			p := h.usagePage(t, w.project, "groupBy=chat&limit=1&from=2000-01-01&to=2000-02-01")
			if len(p.keys) != 0 || p.next != nil {
				t.Errorf("usage of an empty period = %v, nextCursor %#v; want no group and null", p.keys, p.next)
			}
		})
	})
}

// TestUsageReportCursor checks what a usage report's cursor is bound to:
// its project, its grouping and its period. Any other is refused, naming
// cursor, and so are the limits out of bounds.
func TestUsageReportCursor(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		other := h.world()
		t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
		var records []domain.UsageRecord
		for i, project := range []string{w.project, w.project, w.project, other.project, other.project} {
			records = append(records, domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: project,
				Model: fmt.Sprintf("m%d", i), ChatID: domain.NewID(domain.PrefixChat), Outcome: domain.OutcomeOK,
				Usage: domain.Usage{PromptTokens: 1, TotalTokens: 1}, CreatedAt: t0.Add(time.Duration(i) * time.Hour)})
		}
		if err := h.app.Store.InsertUsage(context.Background(), records); err != nil {
			t.Fatal(err)
		}
		base := "/api/v1/projects/" + w.project + "/usage?"
		const period = "from=2026-11-01&to=2026-12-01T00:00:00Z"
		first := h.usagePage(t, w.project, "groupBy=model&limit=1&"+period)
		cursor, ok := first.next.(string)
		if !ok || fmt.Sprint(first.keys) != "[m0]" {
			t.Fatalf("first page = %v, nextCursor %#v; want m0 and a cursor", first.keys, first.next)
		}
		esc := url.QueryEscape(cursor)

		// The next page is of the same report whether from and to are sent
		// again, as the report gave them back, or left out.
		for _, q := range []string{
			"groupBy=model&limit=1&" + period,
			"groupBy=model&limit=1&from=2026-11-01T00:00:00.000Z&to=2026-12-01T00:00:00.000Z",
			"groupBy=model&limit=1",
			"groupBy=model&limit=1&from=2026-11-01",
		} {
			p := h.usagePage(t, w.project, q+"&cursor="+esc)
			if fmt.Sprint(p.keys) != "[m1]" || p.from != "2026-11-01T00:00:00.000Z" || p.to != "2026-12-01T00:00:00.000Z" {
				t.Errorf("usage?%s&cursor=… = %v over %s to %s; want m1 over the first page's period", q, p.keys, p.from, p.to)
			}
		}
		// The default period ends a second from now: the next page still
		// sums the first page's period, not one that ends later.
		def := h.usagePage(t, w.project, "groupBy=model&limit=1")
		time.Sleep(5 * time.Millisecond)
		if p := h.usagePage(t, w.project, "groupBy=model&limit=1&cursor="+url.QueryEscape(def.next.(string))); p.from != def.from || p.to != def.to {
			t.Errorf("the next page of the default period covers %s to %s; the first covered %s to %s", p.from, p.to, def.from, def.to)
		}

		otherCursor := h.usagePage(t, other.project, "groupBy=model&limit=1&"+period).next.(string)
		chatsCursor := h.must(200, "GET", "/api/v1/chats?limit=1", h.admin, nil)["nextCursor"].(string)
		forge := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			t.Fatalf("cursor %q is not base64url: %v", cursor, err)
		}
		for name, q := range map[string]string{
			"garbage":                 "groupBy=model&cursor=!!!",
			"not a cursor":            "groupBy=model&cursor=" + forge("nope"),
			"a chats list's":          "groupBy=model&cursor=" + chatsCursor,
			"another project's":       "groupBy=model&limit=1&" + period + "&cursor=" + url.QueryEscape(otherCursor),
			"another grouping's":      "groupBy=chat&limit=1&" + period + "&cursor=" + esc,
			"the ungrouped report's":  period + "&cursor=" + esc,
			"another from":            "groupBy=model&limit=1&from=2026-11-02&to=2026-12-01&cursor=" + esc,
			"another to":              "groupBy=model&limit=1&from=2026-11-01&to=2026-12-02&cursor=" + esc,
			"another to, from unsent": "groupBy=model&limit=1&to=2026-11-30&cursor=" + esc,
			"cut short":               "groupBy=model&cursor=" + forge(string(raw[:len(raw)-4])),
			"a key not UTF-8":         "groupBy=model&cursor=" + forge(string(raw[:len(raw)-2])+"\xff"),
			"a key with NUL":          "groupBy=model&cursor=" + forge(string(raw[:len(raw)-2])+"\x00"),
		} {
			t.Run(name, func(t *testing.T) {
				r := h.call("GET", base+q, h.admin, nil)
				if r.Status != 400 || r.ErrorCode() != "invalid_request" || r.ErrorField() != "cursor" {
					t.Errorf("usage?%s = %d %s; want 400 naming cursor", q, r.Status, r.Body)
				}
			})
		}
		// A usage cursor is no cursor of a list.
		if r := h.call("GET", "/api/v1/chats?cursor="+esc, h.admin, nil); r.Status != 400 || r.ErrorField() != "cursor" {
			t.Errorf("a usage cursor on the chats list = %d %s; want 400 naming cursor", r.Status, r.Body)
		}
		// Forged cursors, of the form the report writes (its project, its
		// grouping, its period in Unix milliseconds, the last key), whose
		// parts are out of range: a 400, not a 500 from the database, nor
		// a page.
		from, to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		if got, want := string(raw), fmt.Sprintf("usage:%s:model:%d:%d:m0", w.project, from, to); got != want {
			t.Fatalf("cursor = %q; want %q (the forged ones below follow it)", got, want)
		}
		for _, bad := range []string{
			fmt.Sprintf("usage:%s:model:%d:%d:m0", w.project, to, from),               // from after to
			fmt.Sprintf("usage:%s:model:%d:%d:m0", w.project, from, from),             // an empty period
			fmt.Sprintf("usage:%s:model:0%d:%d:m0", w.project, from, to),              // a number written two ways
			fmt.Sprintf("usage:%s:model:-1:%d:m0", w.project, to),                     // before 1970
			fmt.Sprintf("usage:%s:model:%d:99999999999999999999:m0", w.project, from), // past int64
			fmt.Sprintf("usage:%s:model:%d:999999999999999:m0", w.project, from),      // past year 10000
			fmt.Sprintf("usage:%s:colour:%d:%d:m0", w.project, from, to),              // no grouping
			fmt.Sprintf("usage:%s::%d:%d:m0", w.project, from, to),                    // ungrouped
			fmt.Sprintf("usage:prj_nope:model:%d:%d:m0", from, to),                    // no project id
			fmt.Sprintf("usage:%s:model:%d:%d", w.project, from, to),                  // no key
			fmt.Sprintf("%s:model:%d:%d:m0", w.project, from, to),                     // no prefix
		} {
			q := "groupBy=model&cursor=" + forge(bad) // the cursor's period, which must be one
			if r := h.call("GET", base+q, h.admin, nil); r.Status != 400 || r.ErrorField() != "cursor" {
				t.Errorf("usage with the cursor %q = %d %s; want 400 naming cursor", bad, r.Status, r.Body)
			}
		}
		// One forged with a key of no group is still a page of the report:
		// the groups after that key.
		if p := h.usagePage(t, w.project, "groupBy=model&"+period+"&cursor="+forge(fmt.Sprintf("usage:%s:model:%d:%d:m05", w.project, from, to))); fmt.Sprint(p.keys) != "[m1 m2]" {
			t.Errorf("usage after m05 = %v; want [m1 m2]", p.keys)
		}
		for _, bad := range []string{"limit=0", "limit=101", "limit=x", "limit=-1", "limit=1.5", "Limit=5", "limit=1&limit=2", "cursor=" + esc + "&cursor=" + esc} {
			r := h.call("GET", base+"groupBy=model&"+bad, h.admin, nil)
			if r.Status != 400 || r.ErrorCode() != "invalid_request" {
				t.Errorf("usage?groupBy=model&%s = %d %s; want 400", bad, r.Status, r.Body)
			}
		}
		if p := h.usagePage(t, w.project, "groupBy=model&limit=100&"+period); len(p.keys) != 3 || p.next != nil {
			t.Errorf("usage?limit=100 = %v, nextCursor %#v; want the 3 groups and null", p.keys, p.next)
		}
	})
}

// TestUsageReportSaysWhatRetentionDeleted: a report whose period starts
// before the usage records' retention says from when it holds them
// (retainedFrom); one within it says nothing (null). Its period is still
// the one asked for.
func TestUsageReportSaysWhatRetentionDeleted(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, func(c *app.Config) { c.Retention.Usage = time.Hour })
		w := h.world()
		path := "/api/v1/projects/" + w.project + "/usage"
		from := time.Now().Add(-4 * time.Hour).UTC().Truncate(time.Millisecond)
		r := h.must(200, "GET", path+"?from="+url.QueryEscape(from.Format(time.RFC3339Nano)), h.admin, nil)
		retained, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["retainedFrom"]))
		if err != nil || time.Since(retained) < time.Hour || time.Since(retained) > time.Hour+time.Minute {
			t.Errorf("retainedFrom = %v, want an hour ago", r["retainedFrom"])
		}
		if r["from"] != from.Format("2006-01-02T15:04:05.000Z") {
			t.Errorf("from = %v, want the period asked for", r["from"])
		}
		recent := time.Now().Add(-30 * time.Minute).UTC().Format(time.RFC3339)
		if r := h.must(200, "GET", path+"?from="+url.QueryEscape(recent), h.admin, nil); r["retainedFrom"] != nil {
			t.Errorf("a period within the retention: retainedFrom = %v, want null", r["retainedFrom"])
		}
	})
}

// TestUsageGroupsNamed reads usage by provider and by chat: each group of
// one of the project's own names it, as it is named now; one deleted
// since, another project's (a record can name only its own project's, but
// the report must not rely on it) and the stateless completions' group
// name none; other groupings have no names; and a role that may read
// usage but not chats or providers gets the ids alone.
func TestUsageGroupsNamed(t *testing.T) {
	policyUsageOnly, err := policy.NewFrom(policies.Model, `
p, viewer, usage:GetUsage
p, admin, *`)
	if err != nil {
		t.Fatal(err)
	}
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, func(c *app.Config) { c.Authorizer = policyUsageOnly })
		w := h.world()
		other := h.world()
		support := h.chat(h.admin, w.project, w.provider, map[string]any{"name": "Support bot"})
		gone := h.chat(h.admin, w.project, w.provider, nil)
		h.must(200, "DELETE", "/api/v1/chats/"+gone, h.admin, nil)
		h.must(200, "PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"name": "Renamed"})
		var records []domain.UsageRecord
		for _, ref := range []struct{ chat, provider string }{{w.chat, w.provider}, {support, w.provider}, {gone, other.provider}, {other.chat, other.provider}, {"", w.provider}} {
			records = append(records, domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.project, ChatID: ref.chat,
				AIProviderID: ref.provider, Model: "m", Outcome: domain.OutcomeOK, Usage: domain.Usage{PromptTokens: 1, TotalTokens: 1},
				CreatedAt: time.Now().Add(-time.Minute)})
		}
		if err := h.app.Store.InsertUsage(context.Background(), records); err != nil {
			t.Fatal(err)
		}
		names := func(key, groupBy string) map[string]any {
			t.Helper()
			r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?groupBy="+groupBy, key, nil)
			if r.Status != 200 {
				t.Fatalf("usage by %s = %d %s", groupBy, r.Status, r.Body)
			}
			got := map[string]any{}
			for _, d := range r.JSON()["data"].([]any) {
				d := d.(map[string]any)
				k, _ := d["key"].(string)
				got[k] = d["name"]
			}
			return got
		}
		for groupBy, want := range map[string]map[string]any{
			"chat":     {w.chat: "Renamed", support: "Support bot", gone: nil, other.chat: nil, "": nil},
			"provider": {w.provider: "fake", other.provider: nil},
			"model":    {"m": nil},
		} {
			if got := names(h.admin, groupBy); !maps.Equal(got, want) {
				t.Errorf("usage by %s: names %v, want %v", groupBy, got, want)
			}
		}
		uid, viewer := h.user("viewer")
		h.setRole(h.admin, w.project, uid, "viewer")
		for _, groupBy := range []string{"chat", "provider"} {
			for k, name := range names(viewer, groupBy) {
				if name != nil {
					t.Errorf("usage by %s for a role that may not read them: %s named %v", groupBy, k, name)
				}
			}
		}
	})
}
