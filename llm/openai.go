package llm

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
)

// DefaultAzureAPIVersion is the api-version sent to Azure OpenAI when the
// provider names none: the first GA version that streams usage.
const DefaultAzureAPIVersion = "2024-10-21"

// openAIClient returns a go-openai client for the endpoint.
func (c *Client) openAIClient(ep domain.Endpoint) *openai.Client {
	var cfg openai.ClientConfig
	if ep.Type == domain.ProviderAzureOpenAI {
		cfg = openai.DefaultAzureConfig(ep.APIKey.Reveal(), ep.BaseURL)
		cfg.APIVersion = ep.APIVersion
		if cfg.APIVersion == "" {
			cfg.APIVersion = DefaultAzureAPIVersion
		}
		// The model of an Azure call is the deployment name, as is.
		cfg.AzureModelMapperFunc = func(model string) string { return model }
	} else {
		cfg = openai.DefaultConfig(ep.APIKey.Reveal())
		if ep.BaseURL != "" {
			cfg.BaseURL = ep.BaseURL
		}
	}
	cfg.HTTPClient = c.http
	return openai.NewClientWithConfig(cfg)
}

// openAIRequest maps a domain request to go-openai's, and returns the
// fields its struct cannot carry faithfully (see setJSONFields): the
// sampling parameters (temperature 0 would be dropped by omitempty) and
// the token limit, max_completion_tokens for OpenAI itself (its reasoning
// models refuse max_tokens) and max_tokens for the rest.
func openAIRequest(req domain.LLMRequest, stream bool) (openai.ChatCompletionRequest, map[string]any) {
	out := openai.ChatCompletionRequest{
		Model:    req.Model,
		Messages: make([]openai.ChatCompletionMessage, 0, len(req.Messages)),
		Stop:     req.Stop,
		Stream:   stream,
	}
	for _, m := range req.Messages {
		out.Messages = append(out.Messages, openai.ChatCompletionMessage{Role: string(m.Role), Content: m.Content})
	}
	if stream {
		out.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	set := map[string]any{}
	if req.Temperature != nil {
		set["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		set["top_p"] = *req.TopP
	}
	if req.MaxTokens != nil {
		if req.Endpoint.Type == domain.ProviderOpenAI {
			set["max_completion_tokens"] = *req.MaxTokens
		} else {
			set["max_tokens"] = *req.MaxTokens
		}
	}
	return out, set
}

// callOpenAI makes one attempt against an OpenAI-wire endpoint.
func (c *Client) callOpenAI(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error) {
	cli := c.openAIClient(cs.req.Endpoint)
	oreq, set := openAIRequest(cs.req, cs.onDelta != nil)
	ex.jsonSet = set
	if cs.onDelta != nil {
		return c.openAIStream(ctx, ex, cs, cli, oreq)
	}
	resp, err := cli.CreateChatCompletion(ctx, oreq)
	if err != nil {
		return nil, openAILocal(cs.req.Model, err)
	}
	res := &domain.LLMResult{Model: resp.Model, Usage: openAIUsage(resp.Usage), FirstByte: firstByte(ex, cs.start)}
	if len(resp.Choices) == 0 {
		return res, domain.Errorf(domain.Upstream, "the AI provider answered with no choices")
	}
	ch := resp.Choices[0]
	res.Content, res.FinishReason = ch.Message.Content, string(ch.FinishReason)
	return res, nil
}

// openAIStream streams one attempt, handing each content delta to onDelta.
func (c *Client) openAIStream(ctx context.Context, ex *exchange, cs *callSpec, cli *openai.Client, oreq openai.ChatCompletionRequest) (*domain.LLMResult, error) {
	stream, err := cli.CreateChatCompletionStream(ctx, oreq)
	if err != nil {
		return nil, openAILocal(cs.req.Model, err)
	}
	defer stream.Close()

	res := &domain.LLMResult{}
	var content strings.Builder
	defer func() { res.Content = content.String() }()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		if chunk.Model != "" {
			res.Model = chunk.Model
		}
		if chunk.Usage != nil {
			res.Usage = openAIUsage(*chunk.Usage)
		}
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			if d := ch.Delta.Content; d != "" {
				if res.FirstByte == 0 {
					res.FirstByte = time.Since(cs.start)
				}
				content.WriteString(d)
				if err := cs.onDelta(d); err != nil {
					return res, &deltaError{err: err}
				}
			}
			if ch.FinishReason != "" {
				res.FinishReason = string(ch.FinishReason)
			}
		}
	}
	if res.FirstByte == 0 {
		res.FirstByte = firstByte(ex, cs.start)
	}
	if res.FinishReason == "" {
		return res, domain.Errorf(domain.Upstream, errTruncated)
	}
	return res, nil
}

// openAILocal maps go-openai's own refusals, made before any request.
func openAILocal(model string, err error) error {
	if errors.Is(err, openai.ErrChatCompletionInvalidModel) {
		return domain.Invalidf("model", "model %q cannot be used for chat completions", model)
	}
	return err
}

func openAIUsage(u openai.Usage) domain.Usage {
	total := u.TotalTokens
	if total == 0 {
		total = u.PromptTokens + u.CompletionTokens
	}
	return domain.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: total}
}
