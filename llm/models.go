package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/packages/param"
	"github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
)

// Bounds of a provider's model list, which is kept (see domain's
// modelLists) and which no provider needs to come near: its models, the
// bytes of their names, and, for Anthropic's paged list, its pages. An
// upstream that always says there is more, or names models at megabytes,
// would otherwise grow the list until the call's deadline.
const (
	maxModels     = 10_000
	maxModelBytes = 1 << 20
	maxModelPages = 100
)

// anthropicModelsPage is the page size asked of Anthropic, its largest.
const anthropicModelsPage = 1000

// defaultOpenAIBase is the base URL of an openai provider without one.
const defaultOpenAIBase = "https://api.openai.com/v1"

// Models lists the models the provider at ep offers; see domain.LLM. The
// call is retried as a completion's is before the upstream answered, and
// its failures are reported as a completion's are, but for a 4xx other
// than the key's refusal or a rate limit: a completion's is the caller's
// request, refused; a model list's, a request the caller cannot change,
// is the provider's or its baseUrl's fault.
func (c *Client) Models(ctx context.Context, ep domain.Endpoint) ([]domain.Model, error) {
	const op = "llm.Models"
	var list func(context.Context) ([]domain.Model, error)
	switch ep.Type {
	case domain.ProviderOpenAI, domain.ProviderOpenAICompatible:
		list = func(ctx context.Context) ([]domain.Model, error) { return c.openAIModels(ctx, ep) }
	case domain.ProviderAnthropic:
		list = func(ctx context.Context) ([]domain.Model, error) { return c.anthropicModels(ctx, ep) }
	case domain.ProviderAzureOpenAI:
		// Azure lists the models it has, but a completion names a
		// deployment, which only Azure's management API lists.
		return nil, &domain.Error{Kind: domain.Invalid, Op: op,
			Message: "an azure-openai provider's completions name a deployment, not a model, and Azure's OpenAI API does not list deployments; use the deployment names from the Azure portal"}
	default:
		return nil, unsupportedType(op, ep.Type)
	}
	for attempt := 0; ; attempt++ {
		ex := &exchange{openAIWire: ep.Type != domain.ProviderAnthropic}
		models, err := list(withExchange(ctx, ex))
		if err == nil {
			return models, nil
		}
		if c.again(ctx, ep.Type, ex, err, attempt) {
			continue
		}
		err = c.toDomainError(ctx, op, ex, ep.APIKey.Reveal(), err)
		status, _, _ := ex.response()
		var e *domain.Error
		if status >= 400 && status < 500 && status != http.StatusUnauthorized && status != http.StatusForbidden &&
			status != http.StatusTooManyRequests && errors.As(err, &e) {
			e.Kind, e.Details = domain.Upstream, map[string]any{"upstreamStatus": status}
			e.Message = fmt.Sprintf("the AI provider answered HTTP %d for its model list; it may list none, or its baseUrl is wrong (an OpenAI-compatible server's usually ends in /v1)", status)
		}
		return nil, err
	}
}

// openAIModels lists an OpenAI-wire provider's models: GET
// {baseUrl}/models, the key as a bearer token. It reads the list itself
// (go-openai's types are strict): OpenAI's {"data": [...]} or a bare
// array (Together's), created a number of seconds, a string of them, or
// absent.
func (c *Client) openAIModels(ctx context.Context, ep domain.Endpoint) ([]domain.Model, error) {
	url := strings.TrimRight(cmp.Or(ep.BaseURL, defaultOpenAIBase), "/") + "/models"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, domain.Errorf(domain.Invalid, "the AI provider's baseUrl makes no URL of its model list: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	if key := ep.APIKey.Reveal(); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // the transport caps it
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		// As go-openai reports an error answer, for toDomainError.
		return nil, &openai.APIError{HTTPStatusCode: resp.StatusCode, Message: bodyMessage(body)}
	}
	return openAIModelList(body, ep.APIKey.Reveal())
}

// openAIModelList decodes an OpenAI-wire model list (see openAIModels);
// apiKey is the key it was asked with, kept out of what it returns.
func openAIModelList(body []byte, apiKey string) ([]domain.Model, error) {
	type item struct {
		ID      string          `json:"id"`
		Created json.RawMessage `json:"created"`
		OwnedBy string          `json:"owned_by"`
	}
	var items []item
	body = bytes.TrimSpace(body)
	if bytes.HasPrefix(body, []byte("[")) {
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, unreadableModels(notModels(body))
		}
	} else {
		var list struct {
			Data  []item          `json:"data"`
			Error json.RawMessage `json:"error"`
		}
		err := json.Unmarshal(body, &list)
		switch {
		case err != nil:
			return nil, unreadableModels(notModels(body))
		case len(list.Error) > 0 && string(list.Error) != "null":
			msg := sanitize(bodyMessage(body), apiKey, 200)
			return nil, domain.Errorf(domain.Upstream, "the AI provider answered with an error instead of its model list: %s", cmp.Or(msg, "(no message)"))
		case list.Data == nil:
			return nil, unreadableModels("it has no data")
		}
		items = list.Data
	}
	l := modelList{apiKey: apiKey}
	for _, it := range items {
		if it.ID == "" {
			continue
		}
		m := domain.Model{ID: it.ID, OwnedBy: it.OwnedBy}
		if secs := unixSeconds(it.Created); secs > 0 {
			m.Created = time.Unix(secs, 0).UTC()
		}
		if err := l.add(m); err != nil {
			return nil, err
		}
	}
	return l.models, nil
}

// unixSeconds reads a created time as servers send it: seconds as a
// number or a string of one; 0 for anything else.
func unixSeconds(raw json.RawMessage) int64 {
	s := strings.Trim(string(raw), `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1<<40 {
		return 0
	}
	return int64(f)
}

// unreadableModels is the error of a model list that could not be read
// for the reason why (not the decoder's words, which name Go's types).
func unreadableModels(why string) error {
	return domain.Errorf(domain.Upstream, "the AI provider's model list could not be read (%s); check the provider's baseUrl (an OpenAI-compatible server's usually ends in /v1)", why)
}

// notModels says why body, which did not decode as a model list, is not one.
func notModels(body []byte) string {
	if !json.Valid(body) {
		return "it is not JSON"
	}
	return `it is JSON of another shape than {"data": [{"id": "…"}, …]}`
}

// anthropicModels lists Anthropic's models, page by page.
func (c *Client) anthropicModels(ctx context.Context, ep domain.Endpoint) ([]domain.Model, error) {
	cli := c.anthropicClient(ep)
	params := anthropic.ModelListParams{Limit: param.NewOpt[int64](anthropicModelsPage)}
	l := modelList{apiKey: ep.APIKey.Reveal()}
	for pages := 1; ; pages++ {
		page, err := cli.Models.List(ctx, params)
		if err != nil {
			return nil, err
		}
		for _, m := range page.Data {
			if err := l.add(domain.Model{ID: m.ID, Created: m.CreatedAt.UTC(), OwnedBy: "anthropic"}); err != nil {
				return nil, err
			}
		}
		if !page.HasMore || page.LastID == "" || len(page.Data) == 0 {
			return l.models, nil
		}
		if pages == maxModelPages {
			return nil, domain.Errorf(domain.Upstream, "the AI provider's model list went on past %d pages, more than Parley reads", maxModelPages)
		}
		params.AfterID = param.NewOpt(page.LastID)
	}
}

// modelList is a model list as it is read, within its bounds, without
// what holds the key it was asked with (an upstream that echoes it).
type modelList struct {
	models []domain.Model
	bytes  int
	apiKey string
}

func (l *modelList) add(m domain.Model) error {
	if holdsKey(m.ID, l.apiKey) {
		return nil
	}
	if holdsKey(m.OwnedBy, l.apiKey) {
		m.OwnedBy = ""
	}
	if l.bytes += len(m.ID) + len(m.OwnedBy); len(l.models) == maxModels || l.bytes > maxModelBytes {
		return domain.Errorf(domain.Upstream, "the AI provider listed more than %d models or %d bytes of their names, more than Parley lists", maxModels, maxModelBytes)
	}
	l.models = append(l.models, m)
	return nil
}
