package domain

import (
	"context"
	"time"
)

// Document is a piece of project knowledge a message can reference by id.
type Document struct {
	ID        string
	ProjectID string
	Name      string
	Content   string
	MimeType  string
	Metadata  map[string]any
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DocumentFilter selects documents to list.
type DocumentFilter struct {
	ProjectID    string
	MemberUserID string
	Page         Page
}

// DocumentStore keeps documents.
type DocumentStore interface {
	CreateDocument(ctx context.Context, d *Document) error
	// GetDocument returns NotFound when id does not exist.
	GetDocument(ctx context.Context, id string) (*Document, error)
	ListDocuments(ctx context.Context, f DocumentFilter) ([]Document, error)
	// UpdateDocument saves every field of d; NotFound when absent.
	UpdateDocument(ctx context.Context, d *Document) error
	DeleteDocument(ctx context.Context, id string) error
}
