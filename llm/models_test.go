package llm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestModels: a provider's models are listed as it lists them, on
// OpenAI's wire in one answer and Anthropic's page by page, with the key
// each wire sends.
func TestModels(t *testing.T) {
	ids := make([]string, 7)
	for i := range ids {
		ids[i] = fmt.Sprintf("model-%d", i)
	}
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderOpenAICompatible, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.RequireKey(testKey)
			s.SetModels(3, ids...) // Anthropic's in pages of 3: three requests
			models, err := newClient(t).Models(context.Background(), endpoint(typ, s))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range models {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("models %q, want %q", got, ids)
			}
			wantOwner, wantRequests := "llmtest", 1
			if typ == domain.ProviderAnthropic {
				wantOwner, wantRequests = "anthropic", 3
			}
			if m := models[2]; m.OwnedBy != wantOwner || !m.Created.Equal(time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("models[2] = %+v, want owned by %s, created 2024-01-03", m, wantOwner)
			}
			reqs := s.Requests()
			if len(reqs) != wantRequests {
				t.Fatalf("%d upstream requests, want %d", len(reqs), wantRequests)
			}
			for _, r := range reqs {
				if !r.ListModels || r.Method != "GET" || !strings.HasSuffix(r.Path, "/v1/models") {
					t.Errorf("upstream request %s %s, want GET …/v1/models", r.Method, r.Path)
				}
			}
			if typ == domain.ProviderAnthropic {
				if got := reqs[1].Query.Get("after_id"); got != "model-2" {
					t.Errorf("second page after_id = %q, want model-2", got)
				}
				if got := reqs[0].Query.Get("limit"); got != "1000" {
					t.Errorf("limit = %q, want Anthropic's largest, 1000", got)
				}
			}
		})
	}
}

// TestModelsFailures: a model list fails as a completion does (the key
// refused, rate limited, retried after a 5xx), with a 404 of its own,
// and an azure-openai provider, whose completions name deployments, is
// refused without a call.
func TestModelsFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		typ      domain.ProviderType
		b        []llmtest.Behavior
		kind     domain.Kind // 0: no error
		msg      string
		requests int
	}{
		{name: "key refused", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Status: 401}}, kind: domain.Upstream,
			msg: "rejected its API key (HTTP 401)", requests: 1},
		{name: "key refused", typ: domain.ProviderAnthropic, b: []llmtest.Behavior{{Status: 401}}, kind: domain.Upstream,
			msg: "rejected its API key (HTTP 401)", requests: 1},
		{name: "rate limited", typ: domain.ProviderAnthropic, b: []llmtest.Behavior{{Status: 429}}, kind: domain.RateLimited,
			msg: "HTTP 429", requests: 1},
		{name: "no list", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Status: 404}}, kind: domain.Upstream,
			msg: "answered HTTP 404 for its model list", requests: 1},
		{name: "500 then the list", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Status: 500}}, requests: 2},
		{name: "dropped then the list", typ: domain.ProviderAnthropic, b: []llmtest.Behavior{{Fault: llmtest.FaultDrop}}, requests: 2},
		{name: "deployments", typ: domain.ProviderAzureOpenAI, kind: domain.Invalid, msg: "use the deployment names from the Azure portal"},
		// A refusal of the list is no request the caller could fix.
		{name: "400", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Status: 400}}, kind: domain.Upstream,
			msg: "answered HTTP 400 for its model list", requests: 1},
		{name: "405", typ: domain.ProviderAnthropic, b: []llmtest.Behavior{{Status: 405}}, kind: domain.Upstream,
			msg: "answered HTTP 405 for its model list", requests: 1},
		{name: "a web page", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Body: "<html>Welcome</html>", Header: http.Header{"Content-Type": {"text/html"}}}},
			kind: domain.Upstream, msg: "model list could not be read (it is not JSON)", requests: 1},
		{name: "ids of another type", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Body: `{"data":[{"id":5}]}`}},
			kind: domain.Upstream, msg: `model list could not be read (it is JSON of another shape than {"data": [{"id": "…"}, …]})`, requests: 1},
		{name: "an error with 200", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Body: `{"error":{"message":"no models here"}}`}},
			kind: domain.Upstream, msg: "instead of its model list: no models here", requests: 1},
		{name: "a name of megabytes", typ: domain.ProviderOpenAICompatible, b: []llmtest.Behavior{{Body: `{"data":[{"id":"` + strings.Repeat("m", 2<<20) + `"}]}`}},
			kind: domain.Upstream, msg: "bytes of their names", requests: 1},
	} {
		t.Run(tc.name+"/"+string(tc.typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(tc.b...)
			models, err := newClient(t).Models(context.Background(), endpoint(tc.typ, s))
			if got := s.Count(); got != tc.requests {
				t.Errorf("%d upstream requests, want %d", got, tc.requests)
			}
			if tc.kind == 0 {
				if err != nil || len(models) != len(llmtest.DefaultModels) {
					t.Fatalf("Models = %v, %v; want the fake's %d", models, err, len(llmtest.DefaultModels))
				}
				return
			}
			var e *domain.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("err = %#v, want %s saying %q", err, tc.kind, tc.msg)
			}
			if strings.Contains(fmt.Sprint(err), testKey) || strings.Contains(e.Message, testKey) {
				t.Errorf("the error carries the key: %v", err)
			}
		})
	}
}

// TestModelsOfAnUpstreamThatNeverEnds: an Anthropic-wire upstream whose
// every page says there is more is read up to llm's bound, not until the
// call's deadline.
func TestModelsOfAnUpstreamThatNeverEnds(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Script(func(n int, _ llmtest.Request) llmtest.Behavior {
		var data []string
		for i := range 1000 {
			data = append(data, fmt.Sprintf(`{"type":"model","id":"m-%d-%d","display_name":"m","created_at":"2024-01-01T00:00:00Z"}`, n, i))
		}
		return llmtest.Behavior{Body: `{"data":[` + strings.Join(data, ",") + fmt.Sprintf(`],"has_more":true,"first_id":"m-%d-0","last_id":"m-%d-999"}`, n, n)}
	})
	_, err := newClient(t).Models(context.Background(), endpoint(domain.ProviderAnthropic, s))
	var e *domain.Error
	if !errors.As(err, &e) || e.Kind != domain.Upstream || !strings.Contains(e.Message, "more than 10000 models") {
		t.Fatalf("err = %v, want the bound's Upstream error", err)
	}
	if got := s.Count(); got != 11 {
		t.Errorf("%d pages read, want 11 (the bound is met within the eleventh)", got)
	}
}

// TestModelListsAsServersSendThem: OpenAI-compatible servers' lists as
// they differ from OpenAI's: a bare array (Together), created as a float,
// a string or absent (LM Studio), an entry without an id.
func TestModelListsAsServersSendThem(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []domain.Model
	}{
		{"a bare array", `[{"id":"a","created":1700000000,"owned_by":"together"}]`,
			[]domain.Model{{ID: "a", Created: time.Unix(1700000000, 0).UTC(), OwnedBy: "together"}}},
		{"created as a float, a string, absent, or not a time", `{"object":"list","data":[{"id":"f","created":1700000000.0},{"id":"s","created":"1700000000"},{"id":"n"},{"id":"x","created":"yesterday"}]}`,
			[]domain.Model{{ID: "f", Created: time.Unix(1700000000, 0).UTC()}, {ID: "s", Created: time.Unix(1700000000, 0).UTC()}, {ID: "n"}, {ID: "x"}}},
		{"an entry without an id", `{"data":[{"object":"model"},{"id":"b"}]}`, []domain.Model{{ID: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Body: tc.body})
			got, err := newClient(t).Models(context.Background(), endpoint(domain.ProviderOpenAICompatible, s))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b domain.Model) bool {
				return a.ID == b.ID && a.OwnedBy == b.OwnedBy && a.Created.Equal(b.Created)
			}) {
				t.Errorf("models %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestModelsOfAnUpstreamThatPagesWithoutEnd: pages of one model each that
// always say there are more are read up to llm's bound on pages.
func TestModelsOfAnUpstreamThatPagesWithoutEnd(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Script(func(n int, _ llmtest.Request) llmtest.Behavior {
		return llmtest.Behavior{Body: fmt.Sprintf(`{"data":[{"type":"model","id":"m-%d","display_name":"m","created_at":"2024-01-01T00:00:00Z"}],"has_more":true,"first_id":"m-%d","last_id":"m-%d"}`, n, n, n)}
	})
	_, err := newClient(t).Models(context.Background(), endpoint(domain.ProviderAnthropic, s))
	var e *domain.Error
	if !errors.As(err, &e) || e.Kind != domain.Upstream || !strings.Contains(e.Message, "past 100 pages") {
		t.Fatalf("err = %v, want the bound's Upstream error", err)
	}
	if got := s.Count(); got != 100 {
		t.Errorf("%d pages read, want 100", got)
	}
}

// TestModelsKeepTheKeyOut: an upstream that echoes the key it was called
// with, in an error sent with a 200 instead of its list or in the names it
// lists, does not get it to the caller: the message is redacted, a model
// whose id holds the key is left out, an owner that holds it is blank.
func TestModelsKeepTheKeyOut(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Body: `{"error":{"message":"Incorrect API key provided: ` + testKey + `"}}`})
	_, err := newClient(t).Models(context.Background(), endpoint(domain.ProviderOpenAICompatible, s))
	if err == nil || strings.Contains(err.Error(), testKey) || strings.Contains(domain.MessageOf(err), testKey) || !strings.Contains(domain.MessageOf(err), "[redacted]") {
		t.Errorf("an error echoing the key = %v (message %q), want it redacted", err, domain.MessageOf(err))
	}
	s.Enqueue(llmtest.Behavior{Body: `{"data":[{"id":"a","owned_by":"` + testKey + `"},{"id":"key-` + testKey + `"},{"id":"b","owned_by":"acme"}]}`})
	got, err := newClient(t).Models(context.Background(), endpoint(domain.ProviderOpenAICompatible, s))
	if err != nil {
		t.Fatal(err)
	}
	if want := []domain.Model{{ID: "a"}, {ID: "b", OwnedBy: "acme"}}; !slices.Equal(got, want) {
		t.Errorf("models %+v, want %+v: the key in no id or owner", got, want)
	}
}
