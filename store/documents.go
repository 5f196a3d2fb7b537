package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// CreateDocument inserts d; Conflict when its id exists, NotFound when its
// project does not.
func (s *Store) CreateDocument(ctx context.Context, d *domain.Document) error {
	const op = "store.CreateDocument"
	row, err := fromDomainDocument(d)
	if err != nil {
		return domain.Wrap(op, err)
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "document %s already exists", d.ID) },
			func() error { return s.brokenRef(ctx, op, err, ref{"projectId", "project", "projects", d.ProjectID}) })
	}
	d.CreatedAt, d.UpdatedAt = row.CreatedAt, row.UpdatedAt
	return nil
}

// GetDocument returns NotFound when id does not exist.
func (s *Store) GetDocument(ctx context.Context, id string) (*domain.Document, error) {
	const op = "store.GetDocument"
	var row documentRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("document", id), nil)
		}
		return nil, fail(op, err)
	}
	d, err := toDomainDocument(&row)
	if err != nil {
		return nil, fail(op, err)
	}
	return d, nil
}

// DocumentIDsNamed returns the ids of project projectID's documents named
// name, at most limit, ordered by id. It reads the project's documents by
// its index, and of each the columns before content.
func (s *Store) DocumentIDsNamed(ctx context.Context, projectID, name string, limit int) ([]string, error) {
	const op = "store.DocumentIDsNamed"
	ids := []string{}
	err := s.db.WithContext(ctx).Model(&documentRow{}).Where("project_id = ? AND name = ?", projectID, name).
		Order("id").Limit(limit).Pluck("id", &ids).Error
	if err != nil {
		return nil, fail(op, err)
	}
	return ids, nil
}

// ListDocuments returns up to f.Page.Limit+1 documents ordered by id, of
// f.ProjectID and of the projects f.MemberUserID is a member of when set,
// without reading their content.
func (s *Store) ListDocuments(ctx context.Context, f domain.DocumentFilter) ([]domain.DocumentSummary, error) {
	const op = "store.ListDocuments"
	var rows []documentSummaryRow
	q := func() *gorm.DB {
		return s.db.WithContext(ctx).Model(&documentSummaryRow{}).Select(documentSummaryColumns)
	}
	if err := s.list(ctx, q, f.ProjectID, f.MemberUserID, f.Page, &rows); err != nil {
		return nil, fail(op, err)
	}
	out := make([]domain.DocumentSummary, len(rows))
	for i := range rows {
		d, err := toDomainDocumentSummary(&rows[i])
		if err != nil {
			return nil, fail(op, err)
		}
		out[i] = d
	}
	return out, nil
}

// UpdateDocument saves every field of d but its project and createdAt;
// NotFound when absent.
func (s *Store) UpdateDocument(ctx context.Context, d *domain.Document, prev time.Time) error {
	const op = "store.UpdateDocument"
	row, err := fromDomainDocument(d)
	if err != nil {
		return domain.Wrap(op, err)
	}
	res := onlyIfUnchanged(s.db.WithContext(ctx).Model(&documentRow{}).Where("id = ?", d.ID), prev).
		Select("name", "content", "mime_type", "metadata", "updated_at").Updates(&row)
	if res.Error != nil {
		return translate(op, res.Error, nil, nil)
	}
	if err := s.rowsOrStale(ctx, op, res, prev, "documents", "document", d.ID); err != nil {
		return err
	}
	d.UpdatedAt = row.UpdatedAt
	return nil
}

// DeleteDocument deletes it; NotFound when absent. Messages that
// referenced it keep their copy of its content.
func (s *Store) DeleteDocument(ctx context.Context, id string) error {
	res := s.db.WithContext(ctx).Where("id = ?", id).Delete(&documentRow{})
	return rowsOrNotFound("store.DeleteDocument", res, "document", id)
}
