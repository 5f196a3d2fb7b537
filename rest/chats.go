package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
)

// chatResponse is exactly the seed's Chat resource.
type chatResponse struct {
	ID            string `json:"id"`
	ProjectID     string `json:"projectId"`
	AIProviderID  string `json:"aiProviderId"`
	Name          string `json:"name"`
	SystemMessage string `json:"systemMessage"`
	Model         string `json:"model"`
	CreatedAt     string `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt     string `json:"updatedAt" jsonschema:"format=date-time"`
}

func toChatResponse(ch *domain.Chat) chatResponse {
	return chatResponse{ID: ch.ID, ProjectID: ch.ProjectID, AIProviderID: ch.AIProviderID, Name: ch.Name,
		SystemMessage: ch.SystemMessage, Model: ch.Model, CreatedAt: timestamp(ch.CreatedAt), UpdatedAt: timestamp(ch.UpdatedAt)}
}

type chatCreateRequest struct {
	ProjectID     string `json:"projectId" jsonschema:"required"`
	AIProviderID  string `json:"aiProviderId" jsonschema:"required"`
	Name          string `json:"name" max:"200"`
	SystemMessage string `json:"systemMessage" max:"1048576"`
	Model         string `json:"model" max:"200"`
}

type chatUpdateRequest struct {
	AIProviderID  *string `json:"aiProviderId"`
	Name          *string `json:"name" max:"200"`
	SystemMessage *string `json:"systemMessage" max:"1048576"`
	Model         *string `json:"model" max:"200"`
}

func (s *Server) handleChatCreate(c *echo.Context) error {
	var req chatCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	ch, err := s.svcs.Chats.Create(ctx(c), domain.ChatCreate{ProjectID: req.ProjectID, AIProviderID: req.AIProviderID,
		Name: req.Name, SystemMessage: req.SystemMessage, Model: req.Model})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toChatResponse(ch))
}

func (s *Server) handleChatList(c *echo.Context) error {
	pg, err := page(c, "projectId")
	if err != nil {
		return err
	}
	l, err := s.svcs.Chats.List(ctx(c), domain.ListInput{ProjectID: c.QueryParam("projectId"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toChatResponse))
}

func (s *Server) handleChatGet(c *echo.Context) error {
	ch, err := s.svcs.Chats.Get(ctx(c), c.Param("chatId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toChatResponse(ch))
}

func (s *Server) handleChatUpdate(c *echo.Context) error {
	var req chatUpdateRequest
	if err := s.bindUpdate(c, &req); err != nil {
		return err
	}
	ch, err := s.svcs.Chats.Update(ctx(c), c.Param("chatId"), domain.ChatUpdate{AIProviderID: req.AIProviderID,
		Name: req.Name, SystemMessage: req.SystemMessage, Model: req.Model})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toChatResponse(ch))
}

func (s *Server) handleChatDelete(c *echo.Context) error {
	id := c.Param("chatId")
	if err := s.svcs.Chats.Delete(ctx(c), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}
