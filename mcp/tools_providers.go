package mcp

import (
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// providerOut is the REST AI provider resource. It never carries a key:
// only whether one is set and a hint to recognise it.
type providerOut struct {
	ID           string `json:"id" desc:"AI provider id (aip_...)."`
	ProjectID    string `json:"projectId" desc:"Id of the project that owns the provider."`
	Name         string `json:"name" desc:"Provider name."`
	Type         string `json:"type" enum:"openai,openai-compatible,azure-openai,anthropic" desc:"Wire protocol of the provider."`
	BaseURL      string `json:"baseUrl,omitempty" desc:"Base URL of the upstream API; absent for the provider's public default."`
	DefaultModel string `json:"defaultModel" desc:"Model used when neither the request nor the chat names one."`
	APIVersion   string `json:"apiVersion,omitempty" desc:"API version (azure-openai only)."`
	PromptCache  string `json:"promptCache,omitempty" enum:"off,5m,1h" desc:"Anthropic only: how long Anthropic keeps the prompt each completion asks it to cache, so that the next turn of a conversation reads its history from the cache; off when it is asked to cache nothing."`
	HasAPIKey    bool   `json:"hasApiKey" desc:"Whether the provider has an API key; the key itself is never returned."`
	APIKeyHint   string `json:"apiKeyHint,omitempty" desc:"The start and end of the stored key, to recognise it (e.g. sk-…abcd)."`
	APIKeyRef    string `json:"apiKeyRef,omitempty" desc:"Where the server reads the key when it lends its own (env:NAME), rather than one stored with the provider; never the key."`
	CreatedAt    string `json:"createdAt" format:"date-time" desc:"When the provider was created (ISO 8601 UTC)."`
	UpdatedAt    string `json:"updatedAt" format:"date-time" desc:"When the provider was last changed (ISO 8601 UTC)."`
}

func toProviderOut(p *domain.AIProvider) providerOut {
	return providerOut{ID: p.ID, ProjectID: p.ProjectID, Name: p.Name, Type: string(p.Type), BaseURL: p.BaseURL,
		DefaultModel: p.DefaultModel, APIVersion: p.APIVersion, PromptCache: p.PromptCacheSetting(),
		HasAPIKey: p.HasAPIKey(), APIKeyHint: p.APIKeyHint, APIKeyRef: p.APIKeyRef,
		CreatedAt: timestamp(p.CreatedAt), UpdatedAt: timestamp(p.UpdatedAt)}
}

func providerLine(p providerOut) string {
	return fmt.Sprintf("%s %s (%s, default model %s) in project %s", p.ID, quote(p.Name), p.Type, p.DefaultModel, p.ProjectID)
}

func providerText(p providerOut) string {
	s := "AI provider " + providerLine(p)
	if p.BaseURL != "" {
		s += "; base URL " + p.BaseURL
	}
	if p.PromptCache != "" && p.PromptCache != domain.PromptCacheOff {
		s += "; prompt cached for " + p.PromptCache
	}
	if p.HasAPIKey {
		s += "; API key set"
		if p.APIKeyRef != "" {
			s += " (the server's, " + p.APIKeyRef + ")"
		} else if p.APIKeyHint != "" {
			s += " (" + p.APIKeyHint + ")"
		}
	} else {
		s += "; no API key"
	}
	return s
}

type listAIProvidersArgs struct {
	ProjectID string `json:"projectId,omitempty" desc:"Only providers of this project (prj_...); omit for every project you can see."`
	pageArgs
}

func listAIProviders(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listAIProvidersArgs, listOut[providerOut]]("list-ai-providers", "List AI providers",
			"List the AI providers of a project, or of every project you can see. Keys are never returned.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listAIProvidersArgs) (listOut[providerOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[providerOut]{}, err
			}
			l, err := d.svcs.Providers.List(ctx, domain.ListInput{ProjectID: in.ProjectID, Page: pg})
			if err != nil {
				return listOut[providerOut]{}, err
			}
			return toList(l, toProviderOut), nil
		}, func(l listOut[providerOut]) string { return listText("AI provider", l, providerLine) + madeOverREST(l) })
}

type getAIProviderArgs struct {
	AIProviderID string `json:"aiProviderId" desc:"Id of the AI provider (aip_...)."`
}

func getAIProvider(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[getAIProviderArgs, providerOut]("get-ai-provider", "Get an AI provider",
			"Get an AI provider by id. The key is never returned: hasApiKey and apiKeyHint say whether one is set.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in getAIProviderArgs) (providerOut, error) {
			p, err := d.svcs.Providers.Get(ctx, in.AIProviderID)
			if err != nil {
				return providerOut{}, err
			}
			return toProviderOut(p), nil
		}, providerText)
}

// modelOut is a model an AI provider offers.
type modelOut struct {
	ID        string `json:"id" desc:"The model's name, as a completion's model names it."`
	CreatedAt string `json:"createdAt,omitempty" format:"date-time" desc:"When the provider made the model (ISO 8601 UTC); absent when it does not say."`
	OwnedBy   string `json:"ownedBy,omitempty" desc:"Who owns the model, as the provider says (anthropic for Anthropic's)."`
}

type modelsOut struct {
	Models []modelOut `json:"models" desc:"The provider's models, in its order."`
}

type listModelsArgs struct {
	AIProviderID string `json:"aiProviderId,omitempty" desc:"The AI provider whose models to list (aip_...); or pass chatId."`
	ChatID       string `json:"chatId,omitempty" desc:"A chat whose provider's models to list (cht_...), instead of aiProviderId."`
}

func listModels(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listModelsArgs, modelsOut]("list-models", "List an AI provider's models",
			"List the models an AI provider offers, asked of the provider now: the names a completion's model may take. "+
				"Name the provider by aiProviderId (needs the right to use it), or by a chat that completes with it (needs the right to run the chat's completions). "+
				"An azure-openai provider's completions name deployments, which it cannot list.", hints{readOnly: true, idempotent: true, openWorld: true}),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listModelsArgs) (modelsOut, error) {
			var models []domain.Model
			var err error
			switch {
			case in.AIProviderID != "" && in.ChatID != "":
				err = domain.Invalidf("chatId", "pass aiProviderId or chatId, not both: a chat lists its own provider's models")
			case in.AIProviderID == "" && in.ChatID == "":
				err = domain.Invalidf("aiProviderId", "pass aiProviderId, the AI provider whose models to list, or chatId, a chat whose provider's to list")
			case in.ChatID != "":
				models, err = d.svcs.Completions.ChatModels(ctx, in.ChatID)
			default:
				models, err = d.svcs.Completions.ProviderModels(ctx, in.AIProviderID)
			}
			if err != nil {
				return modelsOut{}, err
			}
			out := modelsOut{Models: make([]modelOut, len(models))}
			for i, m := range models {
				out.Models[i] = modelOut{ID: m.ID, OwnedBy: m.OwnedBy}
				if m.Created.Unix() > 0 {
					out.Models[i].CreatedAt = timestamp(m.Created)
				}
			}
			return out, nil
		}, func(out modelsOut) string {
			var b strings.Builder
			b.WriteString(count(len(out.Models), "model"))
			for _, m := range out.Models {
				b.WriteString("\n- " + m.ID)
				if m.OwnedBy != "" {
					b.WriteString(" (owned by " + m.OwnedBy + ")")
				}
			}
			return b.String()
		})
}
