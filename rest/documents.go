package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// documentSummaryResponse is a document without its content, as a list
// gives it (domain.DocumentSummary); bytes is the content's size.
type documentSummaryResponse struct {
	ID        string         `json:"id"`
	ProjectID string         `json:"projectId"`
	Name      string         `json:"name"`
	MimeType  string         `json:"mimeType"`
	Bytes     int            `json:"bytes"`
	Metadata  map[string]any `json:"metadata"`
	CreatedAt string         `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt string         `json:"updatedAt" jsonschema:"format=date-time"`
}

// documentResponse is a whole document: get, create and update give it.
type documentResponse struct {
	documentSummaryResponse
	Content string `json:"content"`
}

func toDocumentSummaryResponse(d *domain.DocumentSummary) documentSummaryResponse {
	md := d.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return documentSummaryResponse{ID: d.ID, ProjectID: d.ProjectID, Name: d.Name, MimeType: d.MimeType, Bytes: d.Bytes,
		Metadata: md, CreatedAt: timestamp(d.CreatedAt), UpdatedAt: timestamp(d.UpdatedAt)}
}

func toDocumentResponse(d *domain.Document) documentResponse {
	sum := d.Summary()
	return documentResponse{documentSummaryResponse: toDocumentSummaryResponse(&sum), Content: d.Content}
}

type documentCreateRequest struct {
	ProjectID string      `json:"projectId" jsonschema:"required"`
	Name      string      `json:"name" jsonschema:"required" min:"1" max:"200"`
	Content   string      `json:"content" jsonschema:"required" min:"1"`
	MimeType  string      `json:"mimeType" max:"255"`
	Metadata  wire.Object `json:"metadata"`
}

type documentUpdateRequest struct {
	Name     *string     `json:"name" min:"1" max:"200"`
	Content  *string     `json:"content" min:"1"`
	MimeType *string     `json:"mimeType" max:"255"`
	Metadata wire.Object `json:"metadata"`
}

func (s *Server) handleDocumentCreate(c *echo.Context) error {
	var req documentCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	d, err := s.svcs.Documents.Create(ctx(c), domain.DocumentCreate{ProjectID: req.ProjectID, Name: req.Name, Content: req.Content, MimeType: req.MimeType, Metadata: req.Metadata})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toDocumentResponse(d))
}

func (s *Server) handleDocumentList(c *echo.Context) error {
	pg, err := page(c, "projectId")
	if err != nil {
		return err
	}
	l, err := s.svcs.Documents.List(ctx(c), domain.ListInput{ProjectID: c.QueryParam("projectId"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toDocumentSummaryResponse))
}

func (s *Server) handleDocumentGet(c *echo.Context) error {
	d, err := s.svcs.Documents.Get(ctx(c), c.Param("documentId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toDocumentResponse(d))
}

func (s *Server) handleDocumentUpdate(c *echo.Context) error {
	var req documentUpdateRequest
	if err := s.bindUpdate(c, &req); err != nil {
		return err
	}
	d, err := s.svcs.Documents.Update(ctx(c), c.Param("documentId"), domain.DocumentUpdate{Name: req.Name, Content: req.Content, MimeType: req.MimeType, Metadata: req.Metadata})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toDocumentResponse(d))
}

func (s *Server) handleDocumentDelete(c *echo.Context) error {
	id := c.Param("documentId")
	if err := s.svcs.Documents.Delete(ctx(c), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}
