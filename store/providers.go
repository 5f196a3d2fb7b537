package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// CreateProvider inserts p; Conflict when its id exists, NotFound when its
// project does not.
func (s *Store) CreateProvider(ctx context.Context, p *domain.AIProvider) error {
	const op = "store.CreateProvider"
	row := fromDomainProvider(p)
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "AI provider %s already exists", p.ID) },
			func() error { return s.brokenRef(ctx, op, err, ref{"projectId", "project", "projects", p.ProjectID}) })
	}
	p.CreatedAt, p.UpdatedAt = row.CreatedAt, row.UpdatedAt
	return nil
}

// GetProvider returns NotFound when id does not exist.
func (s *Store) GetProvider(ctx context.Context, id string) (*domain.AIProvider, error) {
	const op = "store.GetProvider"
	var row providerRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("AI provider", id), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainProvider(&row), nil
}

// ListProviders returns up to f.Page.Limit+1 providers ordered by id, of
// f.ProjectID and of the projects f.MemberUserID is a member of when set.
func (s *Store) ListProviders(ctx context.Context, f domain.ProviderFilter) ([]domain.AIProvider, error) {
	var rows []providerRow
	q := func() *gorm.DB { return s.db.WithContext(ctx).Model(&providerRow{}) }
	if err := s.list(ctx, q, f.ProjectID, f.MemberUserID, f.Page, &rows); err != nil {
		return nil, fail("store.ListProviders", err)
	}
	return toDomainProviders(rows), nil
}

// ListAllProviders returns every provider ordered by id, for re-encrypting keys.
func (s *Store) ListAllProviders(ctx context.Context) ([]domain.AIProvider, error) {
	var rows []providerRow
	if err := s.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, fail("store.ListAllProviders", err)
	}
	return toDomainProviders(rows), nil
}

func toDomainProviders(rows []providerRow) []domain.AIProvider {
	out := make([]domain.AIProvider, len(rows))
	for i := range rows {
		out[i] = *toDomainProvider(&rows[i])
	}
	return out
}

// UpdateProvider saves every field of p but its project and createdAt;
// NotFound when absent.
func (s *Store) UpdateProvider(ctx context.Context, p *domain.AIProvider, prev time.Time) error {
	const op = "store.UpdateProvider"
	row := fromDomainProvider(p)
	res := onlyIfUnchanged(s.db.WithContext(ctx).Model(&providerRow{}).Where("id = ?", p.ID), prev).
		Select("name", "type", "base_url", "default_model", "api_version", "prompt_cache", "api_key_ciphertext",
			"api_key_key_id", "api_key_hint", "api_key_ref", "updated_at").
		Updates(&row)
	if res.Error != nil {
		return translate(op, res.Error, nil, nil)
	}
	if err := s.rowsOrStale(ctx, op, res, prev, "ai_providers", "AI provider", p.ID); err != nil {
		return err
	}
	p.UpdatedAt = row.UpdatedAt
	return nil
}

// DeleteProvider returns NotFound when absent and Conflict while chats use it.
func (s *Store) DeleteProvider(ctx context.Context, id string) error {
	const op = "store.DeleteProvider"
	res := s.db.WithContext(ctx).Where("id = ?", id).Delete(&providerRow{})
	if res.Error != nil {
		return translate(op, res.Error, nil, func() error {
			return conflictf(op, res.Error, "AI provider %s is used by chats; delete or move them first", id)
		})
	}
	return rowsOrNotFound(op, res, "AI provider", id)
}
