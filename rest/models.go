package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
)

// A provider's models are listed at the paths where OpenAI's SDKs ask for
// them, {baseURL}/models, with the base URLs of the completion endpoints
// (openai.go): GET /models?aiProviderId= (an SDK passes it as a query
// parameter), GET /chats/{chatId}/models for the chat's provider, and one
// model of either list under …/models/{model} (the SDKs' retrieve). The
// list is the provider's own, asked of it on each request, in OpenAI's
// shape, which is also the shape of Parley's lists: data, and a
// nextCursor that is always null (the list comes whole).

// modelResponse is OpenAI's model object.
type modelResponse struct {
	ID      string `json:"id" desc:"The model's name, as a completion's model names it."`
	Object  string `json:"object" enum:"model" desc:"Always model."`
	Created int64  `json:"created" desc:"When the provider made the model, in Unix seconds; 0 when it does not say."`
	OwnedBy string `json:"owned_by" desc:"Who owns the model, as the provider says (anthropic for Anthropic's); may be empty."`
}

// modelsResponse is OpenAI's model list, and a Parley list.
type modelsResponse struct {
	Object     string          `json:"object" enum:"list" desc:"Always list."`
	Data       []modelResponse `json:"data"`
	NextCursor *string         `json:"nextCursor" jsonschema:"nullable" desc:"Always null: the list comes whole."`
}

func toModelsResponse(models []domain.Model) modelsResponse {
	out := modelsResponse{Object: "list", Data: make([]modelResponse, len(models))}
	for i, m := range models {
		out.Data[i] = modelResponse{ID: m.ID, Object: "model", OwnedBy: m.OwnedBy}
		if m.Created.Unix() > 0 {
			out.Data[i].Created = m.Created.Unix()
		}
	}
	return out
}

func (s *Server) handleModelList(c *echo.Context) error {
	models, err := s.providerModels(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toModelsResponse(models))
}

func (s *Server) handleModel(c *echo.Context) error {
	models, err := s.providerModels(c)
	if err != nil {
		return err
	}
	return oneModel(c, models, "/api/v1/models?aiProviderId="+c.QueryParam("aiProviderId"))
}

// providerModels lists the models of the provider the query's
// aiProviderId names.
func (s *Server) providerModels(c *echo.Context) ([]domain.Model, error) {
	if err := knownQuery(c, "aiProviderId"); err != nil {
		return nil, err
	}
	id, sent := c.QueryParam("aiProviderId"), c.QueryParams().Has("aiProviderId")
	switch {
	case !sent:
		return nil, domain.Invalidf("aiProviderId", "aiProviderId is required: the id of the AI provider whose models to list, as a query parameter "+
			"(OpenAI's SDKs: models.list({query: {aiProviderId}}) in JavaScript, extra_query in Python); a chat's are at …/api/v1/chats/{chatId}/models")
	case id == "":
		return nil, domain.Invalidf("aiProviderId", "aiProviderId is empty; pass the id of the AI provider whose models to list")
	}
	return s.svcs.Completions.ProviderModels(ctx(c), id)
}

func (s *Server) handleChatModelList(c *echo.Context) error {
	models, err := s.chatModels(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toModelsResponse(models))
}

func (s *Server) handleChatModel(c *echo.Context) error {
	models, err := s.chatModels(c)
	if err != nil {
		return err
	}
	return oneModel(c, models, "/api/v1/chats/"+c.Param("chatId")+"/models")
}

// chatModels lists the models of the path's chat's provider.
func (s *Server) chatModels(c *echo.Context) ([]domain.Model, error) {
	if err := knownQuery(c); err != nil {
		return nil, err
	}
	return s.svcs.Completions.ChatModels(ctx(c), c.Param("chatId"))
}

// oneModel answers the model of models the path's rest names (a model's
// name may hold a slash: meta-llama/Llama-3.3-70B; the router has
// unescaped it), or a 404 that says where the list is.
func oneModel(c *echo.Context, models []domain.Model, list string) error {
	name := c.Param("*")
	if name == "" {
		return domain.Invalidf("model", "the path must end with a model's name, escaped as a path segment is")
	}
	for _, m := range toModelsResponse(models).Data {
		if m.ID == name {
			return c.JSON(http.StatusOK, m)
		}
	}
	return domain.Errorf(domain.NotFound, "the AI provider lists no model %q; GET %s lists those it does", name, list)
}
