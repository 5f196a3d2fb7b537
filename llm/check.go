package llm

import (
	"slices"

	"github.com/parleyhq/parley/domain"
	"github.com/sashabaranov/go-openai"
)

// Check refuses, without calling the provider, a request Complete would
// refuse before any call: what the provider type cannot be sent (an
// Azure deployment name of other characters, an Anthropic message list
// with no turn, a tool call whose arguments are no JSON object) and
// go-openai's own refusals. The domain checks before it counts the
// request against the project's limits, so such a request costs nothing
// and leaves no usage record; Complete refuses the same on its own.
func (c *Client) Check(req domain.LLMRequest) error {
	const op = "llm.Check"
	switch req.Endpoint.Type {
	case domain.ProviderOpenAI, domain.ProviderOpenAICompatible:
		return openAICheck(req)
	case domain.ProviderAzureOpenAI:
		if err := azureCheck(op, req); err != nil {
			return err
		}
		return openAICheck(req)
	case domain.ProviderAnthropic:
		return anthropicCheck(req) // refused turns left out, as Complete leaves them
	}
	return unsupportedType(op, req.Endpoint.Type)
}

// azureCheck refuses what an azure-openai provider cannot be sent.
func azureCheck(op string, req domain.LLMRequest) error {
	if req.Endpoint.BaseURL == "" {
		return &domain.Error{Kind: domain.Invalid, Op: op, Message: "an azure-openai provider needs a baseUrl (https://<resource>.openai.azure.com)"}
	}
	if !domain.AzureDeploymentName(req.Model) {
		return domain.Invalidf("model", "the model of an azure-openai provider is its deployment name, of letters, digits, '.', '_' and '-'; got %s", quote(req.Model))
	}
	return nil
}

// legacyModels are the models go-openai refuses for chat completions,
// as its own check lists them: OpenAI's completion models, long shut
// down (spelt out: go-openai deprecates their names).
var legacyModels = []string{
	"code-davinci-002", "code-cushman-001", "code-davinci-001",
	"text-davinci-003", "text-davinci-002", "text-curie-001", "text-babbage-001", "text-ada-001", "text-davinci-001",
	"davinci-instruct-beta", "davinci", "curie-instruct-beta", "curie", "ada", "babbage",
}

// openAICheck runs go-openai's checks of a chat completion ahead of it:
// the model, and GPT-6's reasoning parameters, on what of the request
// they read (the sampling parameters go to the provider beside its struct,
// see openAIRequest, so they see none). Their refusals are mapped as
// openAILocal maps them when the SDK makes them.
func openAICheck(req domain.LLMRequest) error {
	if slices.Contains(legacyModels, req.Model) {
		return openAILocal(req, openai.ErrChatCompletionInvalidModel)
	}
	v := openai.ChatCompletionRequest{Model: req.Model, ReasoningEffort: req.ReasoningEffort, ToolChoice: openAIToolChoice(req.ToolChoice)}
	if len(req.Tools) > 0 {
		v.Tools = []openai.Tool{{Type: openai.ToolTypeFunction}}
	}
	if err := openai.NewReasoningValidator().Validate(v); err != nil {
		if e := openAILocal(req, err); domain.KindOf(e) == domain.Invalid {
			return e
		}
	}
	return nil
}

// anthropicCheck refuses what anthropicParams refuses, without building
// the parameters: a list of no turn but system messages once blank texts
// and refused turns are left out (see anthropicMessages), and one whose
// last message was left out so that it would end with a reply.
func anthropicCheck(req domain.LLMRequest) error {
	msgs, _ := anthropicMessages(req)
	var last domain.MessageRole // of the last message Anthropic would get, system aside
	for _, m := range msgs {
		if m.Role == domain.RoleSystem {
			continue
		}
		last = m.Role
	}
	switch {
	case last == "":
		return noTurn()
	case last == domain.RoleAssistant:
		return prefillError(req)
	}
	return nil
}

// prefillError is the refusal of req, whose messages as Anthropic gets
// them end with a reply, unless req's own last message is that reply (a
// prefill, which Anthropic continues): nil then. Its last message was left
// out, for having no text or for being a refused reply, and what is left
// ends with an earlier reply, which Anthropic would continue rather than
// answer.
func prefillError(req domain.LLMRequest) error {
	switch last := req.Messages[len(req.Messages)-1]; {
	case last.Role == domain.RoleAssistant && last.Refusal != "":
		return domain.Invalidf("messages", "the last message is a refused reply, which an Anthropic provider is not sent "+
			"(Anthropic refuses every request that still holds one); end the messages with the next user message")
	case last.Role != domain.RoleAssistant:
		return endsWithReply()
	}
	return nil
}

func noTurn() error {
	return domain.Invalidf("messages", "an Anthropic provider needs at least one user or assistant message with content; "+
		"this request has none besides the system message")
}

// endsWithReply: the request's last message had no text and was left
// out, and what is left ends with a reply, which Anthropic would continue
// (a prefill) rather than answer, or refuse.
func endsWithReply() error {
	return domain.Invalidf("messages", "the last message has no text, which an Anthropic provider cannot be sent; "+
		"without it the request would end with the assistant's reply, which Anthropic continues rather than answers: send text in it")
}
