package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/packages/param"

	"github.com/parleyhq/parley/domain"
)

// maxModels bounds a provider's model list. Anthropic's comes in pages,
// and an upstream that always says there is more would otherwise grow it
// until the call's deadline; no provider offers nearly as many.
const maxModels = 10_000

// anthropicModelsPage is the page size asked of Anthropic, its largest.
const anthropicModelsPage = 1000

// Models lists the models the provider at ep offers; see domain.LLM. The
// call is retried as a completion's is before the upstream answered, and
// its failures are reported as a completion's are.
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
		if c.again(ctx, ex, err, attempt) {
			continue
		}
		err = c.toDomainError(ctx, op, ex, ep.APIKey.Reveal(), err)
		var e *domain.Error
		if status, _, _ := ex.response(); status == http.StatusNotFound && errors.As(err, &e) {
			// Not a model's 404, as a completion's is: the list's own.
			e.Message = "the AI provider answered HTTP 404 for its model list; it may list none, or its baseUrl is wrong (an OpenAI-compatible server's usually ends in /v1)"
		}
		return nil, err
	}
}

// openAIModels lists an OpenAI-wire provider's models: GET {baseUrl}/models.
func (c *Client) openAIModels(ctx context.Context, ep domain.Endpoint) ([]domain.Model, error) {
	list, err := c.openAIClient(ep).ListModels(ctx)
	if err != nil {
		return nil, err
	}
	if len(list.Models) > maxModels {
		return nil, tooManyModels()
	}
	models := make([]domain.Model, len(list.Models))
	for i, m := range list.Models {
		models[i] = domain.Model{ID: m.ID, OwnedBy: m.OwnedBy}
		if m.CreatedAt > 0 {
			models[i].Created = time.Unix(m.CreatedAt, 0).UTC()
		}
	}
	return models, nil
}

// anthropicModels lists Anthropic's models, page by page.
func (c *Client) anthropicModels(ctx context.Context, ep domain.Endpoint) ([]domain.Model, error) {
	cli := c.anthropicClient(ep)
	params := anthropic.ModelListParams{Limit: param.NewOpt[int64](anthropicModelsPage)}
	var models []domain.Model
	for {
		page, err := cli.Models.List(ctx, params)
		if err != nil {
			return nil, err
		}
		for _, m := range page.Data {
			if len(models) == maxModels {
				return nil, tooManyModels()
			}
			models = append(models, domain.Model{ID: m.ID, Created: m.CreatedAt.UTC(), OwnedBy: "anthropic"})
		}
		if !page.HasMore || page.LastID == "" || len(page.Data) == 0 {
			return models, nil
		}
		params.AfterID = param.NewOpt(page.LastID)
	}
}

func tooManyModels() error {
	return &domain.Error{Kind: domain.Upstream, Message: fmt.Sprintf("the AI provider listed more than %d models, more than Parley lists", maxModels)}
}
