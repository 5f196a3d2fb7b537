package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

type projectResponse struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description" max:"1048576"`
	CreatedAt   string `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt   string `json:"updatedAt" jsonschema:"format=date-time"`
}

func toProjectResponse(p *domain.Project) projectResponse {
	return projectResponse{ID: p.ID, Name: p.Name, Description: p.Description, CreatedAt: timestamp(p.CreatedAt), UpdatedAt: timestamp(p.UpdatedAt)}
}

type projectCreateRequest struct {
	Name        string `json:"name" jsonschema:"required" min:"1" max:"200"`
	Description string `json:"description" max:"1048576"`
}

type projectUpdateRequest struct {
	Name        *string `json:"name" min:"1" max:"200"`
	Description *string `json:"description" max:"1048576"`
}

func (s *Server) handleProjectCreate(c *echo.Context) error {
	var req projectCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	p, err := s.svcs.Projects.Create(ctx(c), domain.ProjectCreate{Name: req.Name, Description: req.Description})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toProjectResponse(p))
}

func (s *Server) handleProjectList(c *echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svcs.Projects.List(ctx(c), pg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toProjectResponse))
}

func (s *Server) handleProjectGet(c *echo.Context) error {
	p, err := s.svcs.Projects.Get(ctx(c), c.Param("projectId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProjectResponse(p))
}

func (s *Server) handleProjectUpdate(c *echo.Context) error {
	var req projectUpdateRequest
	if err := s.bindUpdate(c, &req); err != nil {
		return err
	}
	p, err := s.svcs.Projects.Update(ctx(c), c.Param("projectId"), domain.ProjectUpdate{Name: req.Name, Description: req.Description})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProjectResponse(p))
}

func (s *Server) handleProjectDelete(c *echo.Context) error {
	id := c.Param("projectId")
	if err := s.svcs.Projects.Delete(ctx(c), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}

type memberResponse struct {
	ProjectID string `json:"projectId"`
	UserID    string `json:"userId"`
	Role      string `json:"role" enum:"viewer,editor,owner"`
	CreatedAt string `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt string `json:"updatedAt" jsonschema:"format=date-time"`
}

func toMemberResponse(m *domain.Member) memberResponse {
	return memberResponse{ProjectID: m.ProjectID, UserID: m.UserID, Role: string(m.Role), CreatedAt: timestamp(m.CreatedAt), UpdatedAt: timestamp(m.UpdatedAt)}
}

type memberPutRequest struct {
	Role string `json:"role" jsonschema:"required" enum:"viewer,editor,owner"`
}

func (s *Server) handleMemberList(c *echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svcs.Projects.ListMembers(ctx(c), c.Param("projectId"), pg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toMemberResponse))
}

func (s *Server) handleMemberPut(c *echo.Context) error {
	var req memberPutRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	m, err := s.svcs.Projects.PutMember(ctx(c), c.Param("projectId"), c.Param("userId"), domain.Role(req.Role))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toMemberResponse(m))
}

func (s *Server) handleMemberDelete(c *echo.Context) error {
	id := c.Param("userId")
	if err := s.svcs.Projects.DeleteMember(ctx(c), c.Param("projectId"), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}

type usageResponse struct {
	ProjectID string `json:"projectId"`
	From      string `json:"from" jsonschema:"format=date-time"` // the period summed, defaults resolved
	To        string `json:"to" jsonschema:"format=date-time"`
	// RetainedFrom, when the period starts earlier, is the time before
	// which usage records are past their retention
	// (PARLEY_USAGE_RETENTION): the totals may lack any of them (all once
	// the hourly sweep has run).
	RetainedFrom *string          `json:"retainedFrom" jsonschema:"nullable,format=date-time"`
	GroupBy      string           `json:"groupBy,omitempty"`
	Data         []usageTotalJSON `json:"data"`
	// NextCursor is null on the last page, and when not grouped.
	NextCursor *string `json:"nextCursor" jsonschema:"nullable"`
}

type usageTotalJSON struct {
	Key string `json:"key,omitempty"`
	// Name is, grouped by provider or chat, the provider's or chat's
	// current name; absent when it has been deleted since, or the
	// caller's role may not read it.
	Name             string `json:"name,omitempty"`
	PromptTokens     int    `json:"promptTokens"`
	CompletionTokens int    `json:"completionTokens"`
	TotalTokens      int    `json:"totalTokens"`
	Requests         int64  `json:"requests"`
	// EstimatedTokens is the part of totalTokens of completions whose
	// usage Parley estimated, in whole or in part.
	EstimatedTokens int64 `json:"estimatedTokens"`
	// CachedTokens is the part of promptTokens the providers read from
	// their prompt cache, CacheWriteTokens the part they wrote to it;
	// ReasoningTokens the part of completionTokens reasoning models spent
	// thinking (0 for records before they were kept).
	CachedTokens     int `json:"cachedTokens"`
	CacheWriteTokens int `json:"cacheWriteTokens"`
	ReasoningTokens  int `json:"reasoningTokens"`
}

func (s *Server) handleUsageGet(c *echo.Context) error {
	pg, err := page(c, "groupBy", "from", "to")
	if err != nil {
		return err
	}
	in := domain.UsageInput{ProjectID: c.Param("projectId"), GroupBy: domain.UsageGroupBy(c.QueryParam("groupBy")), Page: pg}
	if in.From, err = wire.ParseQueryTime("from", c.QueryParam("from")); err != nil {
		return err
	}
	if in.To, err = wire.ParseQueryTime("to", c.QueryParam("to")); err != nil {
		return err
	}
	rep, err := s.svcs.UsageReports.Get(ctx(c), in)
	if err != nil {
		return err
	}
	out := usageResponse{ProjectID: in.ProjectID, From: wire.Timestamp(rep.From), To: wire.Timestamp(rep.To), RetainedFrom: wire.OptionalTimestamp(rep.RetainedFrom),
		GroupBy: string(in.GroupBy), Data: []usageTotalJSON{}}
	for _, t := range rep.Totals {
		out.Data = append(out.Data, usageTotalJSON{Key: t.Key, Name: t.Name, PromptTokens: t.Usage.PromptTokens, CompletionTokens: t.Usage.CompletionTokens, TotalTokens: t.Usage.TotalTokens, Requests: t.Requests, EstimatedTokens: t.EstimatedTokens,
			CachedTokens: t.Usage.CachedTokens, CacheWriteTokens: t.Usage.CacheWriteTokens, ReasoningTokens: t.Usage.ReasoningTokens})
	}
	if rep.NextCursor != "" {
		out.NextCursor = &rep.NextCursor
	}
	return c.JSON(http.StatusOK, out)
}

// limitsJSON is a project's limits; 0 means none, and the domain refuses
// more than 2147483647 (the bounds are for the OpenAPI document).
type limitsJSON struct {
	RequestsPerMinute       int `json:"requestsPerMinute" jsonschema:"minimum=0,maximum=2147483647"`
	TokensPerMinute         int `json:"tokensPerMinute" jsonschema:"minimum=0,maximum=2147483647"`
	KeyRequestsPerMinute    int `json:"keyRequestsPerMinute" jsonschema:"minimum=0,maximum=2147483647"`
	KeyTokensPerMinute      int `json:"keyTokensPerMinute" jsonschema:"minimum=0,maximum=2147483647"`
	ConcurrentStreams       int `json:"concurrentStreams" jsonschema:"minimum=0,maximum=2147483647"`
	ConcurrentStreamsPerKey int `json:"concurrentStreamsPerKey" jsonschema:"minimum=0,maximum=2147483647"`
}

type limitsResponse struct {
	ProjectID string `json:"projectId"`
	limitsJSON
	UpdatedAt *string `json:"updatedAt" jsonschema:"nullable,format=date-time"`
}

func toLimitsResponse(l *domain.ProjectLimits) limitsResponse {
	r := limitsResponse{ProjectID: l.ProjectID, limitsJSON: limitsJSON{
		RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute, KeyRequestsPerMinute: l.KeyRequestsPerMinute,
		KeyTokensPerMinute: l.KeyTokensPerMinute, ConcurrentStreams: l.ConcurrentStreams, ConcurrentStreamsPerKey: l.ConcurrentStreamsPerKey,
	}}
	r.UpdatedAt = wire.OptionalTimestamp(l.UpdatedAt)
	return r
}

func (s *Server) handleLimitsGet(c *echo.Context) error {
	l, err := s.svcs.Limits.Get(ctx(c), c.Param("projectId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toLimitsResponse(l))
}

// limitsPut is the body of a PUT of limits: the limits, and the fields a
// GET answers besides them, so that what a GET gave can be sent back
// changed. Those are output only: projectId, if sent, must be the path's
// project (a body read from another project's limits is copied by leaving
// it out), and updatedAt is ignored, as AIP-203 has a service do.
type limitsPut struct {
	ProjectID string `json:"projectId,omitempty" jsonschema:"readOnly=true,nullable"`
	limitsJSON
	UpdatedAt *string `json:"updatedAt,omitempty" jsonschema:"readOnly=true,nullable,format=date-time"`
}

func (s *Server) handleLimitsPut(c *echo.Context) error {
	var req limitsPut
	if err := s.bindWithoutNulls(c, &req, "send a number, 0 for no limit", "projectId", "updatedAt"); err != nil {
		return err
	}
	l, err := s.svcs.Limits.Put(ctx(c), c.Param("projectId"),
		domain.LimitsUpdate{ProjectID: req.ProjectID, LimitValues: domain.LimitValues(req.limitsJSON)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toLimitsResponse(l))
}
