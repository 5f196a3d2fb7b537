package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
)

// providerResponse never carries the key: only whether there is one and a hint.
type providerResponse struct {
	ID           string `json:"id"`
	ProjectID    string `json:"projectId"`
	Name         string `json:"name"`
	Type         string `json:"type" enum:"openai,openai-compatible,azure-openai,anthropic"`
	BaseURL      string `json:"baseUrl,omitempty"`
	DefaultModel string `json:"defaultModel"`
	APIVersion   string `json:"apiVersion,omitempty"`
	PromptCache  string `json:"promptCache,omitempty" enum:"off,5m,1h"` // anthropic only
	HasAPIKey    bool   `json:"hasApiKey"`
	APIKeyHint   string `json:"apiKeyHint,omitempty"`
	APIKeyRef    string `json:"apiKeyRef,omitempty"`
	CreatedAt    string `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt    string `json:"updatedAt" jsonschema:"format=date-time"`
}

func toProviderResponse(p *domain.AIProvider) providerResponse {
	return providerResponse{
		ID: p.ID, ProjectID: p.ProjectID, Name: p.Name, Type: string(p.Type), BaseURL: p.BaseURL,
		DefaultModel: p.DefaultModel, APIVersion: p.APIVersion, PromptCache: p.PromptCacheSetting(),
		HasAPIKey: p.HasAPIKey(), APIKeyHint: p.APIKeyHint, APIKeyRef: p.APIKeyRef,
		CreatedAt: timestamp(p.CreatedAt), UpdatedAt: timestamp(p.UpdatedAt),
	}
}

type providerCreateRequest struct {
	ProjectID    string `json:"projectId" jsonschema:"required"`
	Name         string `json:"name" jsonschema:"required" min:"1" max:"200"`
	Type         string `json:"type" jsonschema:"required" enum:"openai,openai-compatible,azure-openai,anthropic"`
	BaseURL      string `json:"baseUrl" max:"2048"`
	DefaultModel string `json:"defaultModel" jsonschema:"required" max:"200"`
	APIVersion   string `json:"apiVersion" max:"200"`
	PromptCache  string `json:"promptCache" enum:",off,5m,1h"`
	APIKey       string `json:"apiKey" max:"4096"`
	APIKeyRef    string `json:"apiKeyRef"`
}

type providerUpdateRequest struct {
	Name         *string `json:"name" min:"1" max:"200"`
	BaseURL      *string `json:"baseUrl" max:"2048"`
	DefaultModel *string `json:"defaultModel" max:"200"`
	APIVersion   *string `json:"apiVersion" max:"200"`
	PromptCache  *string `json:"promptCache" enum:",off,5m,1h"`
	APIKey       *string `json:"apiKey" max:"4096"`
	APIKeyRef    *string `json:"apiKeyRef"`
}

func (s *Server) handleProviderCreate(c *echo.Context) error {
	var req providerCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	p, err := s.svcs.Providers.Create(ctx(c), domain.ProviderCreate{
		ProjectID: req.ProjectID, Name: req.Name, Type: domain.ProviderType(req.Type), BaseURL: req.BaseURL,
		DefaultModel: req.DefaultModel, APIVersion: req.APIVersion, PromptCache: req.PromptCache,
		APIKey: req.APIKey, APIKeyRef: req.APIKeyRef,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toProviderResponse(p))
}

func (s *Server) handleProviderList(c *echo.Context) error {
	pg, err := page(c, "projectId")
	if err != nil {
		return err
	}
	l, err := s.svcs.Providers.List(ctx(c), domain.ListInput{ProjectID: c.QueryParam("projectId"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toProviderResponse))
}

func (s *Server) handleProviderGet(c *echo.Context) error {
	p, err := s.svcs.Providers.Get(ctx(c), c.Param("providerId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProviderResponse(p))
}

func (s *Server) handleProviderUpdate(c *echo.Context) error {
	var req providerUpdateRequest
	if err := s.bindUpdate(c, &req); err != nil {
		return err
	}
	p, err := s.svcs.Providers.Update(ctx(c), c.Param("providerId"), domain.ProviderUpdate{
		Name: req.Name, BaseURL: req.BaseURL, DefaultModel: req.DefaultModel, APIVersion: req.APIVersion,
		PromptCache: req.PromptCache, APIKey: req.APIKey, APIKeyRef: req.APIKeyRef,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProviderResponse(p))
}

func (s *Server) handleProviderDelete(c *echo.Context) error {
	id := c.Param("providerId")
	if err := s.svcs.Providers.Delete(ctx(c), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}
