package llm

import (
	"context"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/parleyhq/parley/domain"
)

// anthropicClient returns an Anthropic SDK client for the endpoint. The
// SDK's own retries are off (Complete retries) and so are its environment
// defaults: a tenant's provider must never pick up the server's
// ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL.
func (c *Client) anthropicClient(ep domain.Endpoint) anthropic.Client {
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithHTTPClient(c.http),
		option.WithMaxRetries(0),
		option.WithAPIKey(ep.APIKey.Reveal()),
	}
	if ep.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(anthropicBase(ep.BaseURL)))
	}
	return anthropic.NewClient(opts...)
}

// anthropicBase accepts a base URL with or without the /v1 the SDK adds
// itself, so "https://api.anthropic.com" and ".../v1" both work.
func anthropicBase(u string) string {
	u = strings.TrimRight(u, "/")
	return strings.TrimSuffix(u, "/v1") + "/"
}

// anthropicParams maps a domain request to the Messages API: system
// messages become the system parameter, the rest keep their order.
func anthropicParams(req domain.LLMRequest) anthropic.MessageNewParams {
	p := anthropic.MessageNewParams{
		Model:         anthropic.Model(req.Model),
		MaxTokens:     DefaultAnthropicMaxTokens,
		StopSequences: req.Stop,
	}
	if req.MaxTokens != nil {
		p.MaxTokens = int64(*req.MaxTokens)
	}
	if req.Temperature != nil {
		p.Temperature = anthropic.Float(*req.Temperature)
	}
	if req.TopP != nil {
		p.TopP = anthropic.Float(*req.TopP)
	}
	for _, m := range req.Messages {
		switch m.Role {
		case domain.RoleSystem:
			p.System = append(p.System, anthropic.TextBlockParam{Text: m.Content})
		case domain.RoleAssistant:
			p.Messages = append(p.Messages, anthropic.NewAssistantMessage(anthropic.NewTextBlock(m.Content)))
		default:
			p.Messages = append(p.Messages, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Content)))
		}
	}
	return p
}

// callAnthropic makes one attempt against the Anthropic Messages API.
func (c *Client) callAnthropic(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error) {
	cli := c.anthropicClient(cs.req.Endpoint)
	params := anthropicParams(cs.req)
	if cs.onDelta != nil {
		return c.anthropicStream(ctx, ex, cs, cli, params)
	}
	// A request timeout of our own keeps the SDK from refusing large
	// max_tokens without streaming; ctx and the first-byte timeout govern.
	msg, err := cli.Messages.New(ctx, params, option.WithRequestTimeout(time.Hour))
	if err != nil {
		return nil, err
	}
	if msg.StopReason == "" && len(msg.Content) == 0 {
		return nil, domain.Errorf(domain.Upstream, "the AI provider answered with an empty message")
	}
	res := &domain.LLMResult{
		Model:        string(msg.Model),
		FinishReason: anthropicFinish(string(msg.StopReason)),
		FirstByte:    firstByte(ex, cs.start),
	}
	var content strings.Builder
	for _, b := range msg.Content {
		if b.Type == "text" {
			content.WriteString(b.Text)
		}
	}
	res.Content = content.String()
	u := msg.Usage
	res.Usage = anthropicUsage(u.InputTokens+u.CacheCreationInputTokens+u.CacheReadInputTokens, u.OutputTokens)
	return res, nil
}

// anthropicStream streams one attempt, mapping the Messages API's events
// to deltas: message_start carries the model and input tokens,
// content_block_delta the text, message_delta the stop reason and the
// cumulative output tokens.
func (c *Client) anthropicStream(ctx context.Context, ex *exchange, cs *callSpec, cli anthropic.Client, params anthropic.MessageNewParams) (*domain.LLMResult, error) {
	stream := cli.Messages.NewStreaming(ctx, params)
	defer stream.Close()

	res := &domain.LLMResult{}
	var content strings.Builder
	defer func() { res.Content = content.String() }()
	var input, output int64
	for stream.Next() {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		ev := stream.Current()
		switch ev.Type {
		case "message_start":
			res.Model = string(ev.Message.Model)
			u := ev.Message.Usage
			input = u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
			output = u.OutputTokens
		case "content_block_delta":
			if ev.Delta.Type != "text_delta" || ev.Delta.Text == "" {
				continue
			}
			if res.FirstByte == 0 {
				res.FirstByte = time.Since(cs.start)
			}
			content.WriteString(ev.Delta.Text)
			if err := cs.onDelta(ev.Delta.Text); err != nil {
				return res, &deltaError{err: err}
			}
		case "message_delta":
			if ev.Delta.StopReason != "" {
				res.FinishReason = anthropicFinish(string(ev.Delta.StopReason))
			}
			u := ev.Usage
			if in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens; in > 0 {
				input = in
			}
			if u.OutputTokens > 0 {
				output = u.OutputTokens
			}
		}
		res.Usage = anthropicUsage(input, output)
	}
	if err := stream.Err(); err != nil {
		return res, err
	}
	if res.FirstByte == 0 {
		res.FirstByte = firstByte(ex, cs.start)
	}
	if res.FinishReason == "" {
		return res, domain.Errorf(domain.Upstream, errTruncated)
	}
	return res, nil
}

// anthropicFinish maps a stop_reason to the OpenAI finish_reason Parley
// speaks.
func anthropicFinish(stop string) string {
	switch stop {
	case "end_turn", "stop_sequence", "pause_turn":
		return "stop"
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return stop
}

// anthropicUsage maps Anthropic's usage to Parley's: the prompt counts
// every input token, cached or not, as OpenAI's prompt_tokens does.
func anthropicUsage(input, output int64) domain.Usage {
	return domain.Usage{PromptTokens: int(input), CompletionTokens: int(output), TotalTokens: int(input + output)}
}
