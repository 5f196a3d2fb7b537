package store

import (
	"context"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/parleyhq/parley/domain"
)

// CreateProject inserts p and its first member, atomically.
func (s *Store) CreateProject(ctx context.Context, p *domain.Project, owner domain.Member) error {
	const op = "store.CreateProject"
	prj, mem := fromDomainProject(p), fromDomainMember(&owner)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&prj).Error; err != nil {
			return err
		}
		return tx.Create(&mem).Error
	})
	if err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "project %s already exists", p.ID) },
			func() error { return because(op, domain.NotFoundf("user", owner.UserID), err) })
	}
	p.CreatedAt, p.UpdatedAt = prj.CreatedAt, prj.UpdatedAt
	return nil
}

// GetProject returns NotFound when id does not exist.
func (s *Store) GetProject(ctx context.Context, id string) (*domain.Project, error) {
	const op = "store.GetProject"
	var row projectRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("project", id), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainProject(&row), nil
}

// ListProjects returns up to f.Page.Limit+1 projects ordered by id, only
// those f.MemberUserID is a member of when it is set.
func (s *Store) ListProjects(ctx context.Context, f domain.ProjectFilter) ([]domain.Project, error) {
	var rows []projectRow
	q := s.db.WithContext(ctx)
	if f.MemberUserID != "" {
		// The page of the member's projects, read in project_members'
		// (user_id, project_id) index, rather than every project's id
		// checked against their list.
		q = q.Where("id IN (?)", paged(s.db.Model(&memberRow{}).Select("project_id").
			Where("user_id = ?", f.MemberUserID), "project_id", f.Page))
	}
	if err := paged(q, "id", f.Page).Find(&rows).Error; err != nil {
		return nil, fail("store.ListProjects", err)
	}
	out := make([]domain.Project, len(rows))
	for i := range rows {
		out[i] = *toDomainProject(&rows[i])
	}
	return out, nil
}

// UpdateProject saves p's name, description and updatedAt; NotFound when absent.
func (s *Store) UpdateProject(ctx context.Context, p *domain.Project, prev time.Time) error {
	const op = "store.UpdateProject"
	row := fromDomainProject(p)
	res := onlyIfUnchanged(s.db.WithContext(ctx).Model(&projectRow{}).Where("id = ?", p.ID), prev).
		Select("name", "description", "updated_at").Updates(&row)
	if res.Error != nil {
		return translate(op, res.Error, nil, nil)
	}
	if err := s.rowsOrStale(ctx, op, res, prev, "projects", "project", p.ID); err != nil {
		return err
	}
	p.UpdatedAt = row.UpdatedAt
	return nil
}

// DeleteProject deletes the project and everything it owns (members,
// providers, documents, chats, conversations, usage); NotFound when absent.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	const op = "store.DeleteProject"
	return s.deleteWhole(ctx, "project:"+id, func(ctx context.Context) error {
		if err := s.deleteProjectRows(ctx, id); err != nil {
			return fail(op, err)
		}
		return s.deleteRow(ctx, op, "projects", "project", id)
	})
}

// GetMember returns NotFound when userID is not a member of projectID.
func (s *Store) GetMember(ctx context.Context, projectID, userID string) (*domain.Member, error) {
	const op = "store.GetMember"
	var row memberRow
	err := s.db.WithContext(ctx).Take(&row, "project_id = ? AND user_id = ?", projectID, userID).Error
	if err != nil {
		if notFound(err) {
			return nil, because(op, domain.Errorf(domain.NotFound, "user %s is not a member of project %s", userID, projectID), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainMember(&row), nil
}

// ListMembers returns up to p.Limit+1 members of projectID ordered by user id.
func (s *Store) ListMembers(ctx context.Context, projectID string, p domain.Page) ([]domain.Member, error) {
	var rows []memberRow
	q := s.db.WithContext(ctx).Where("project_id = ?", projectID)
	if err := paged(q, "user_id", p).Find(&rows).Error; err != nil {
		return nil, fail("store.ListMembers", err)
	}
	out := make([]domain.Member, len(rows))
	for i := range rows {
		out[i] = *toDomainMember(&rows[i])
	}
	return out, nil
}

// PutMember inserts m, or updates the role and updatedAt of an existing
// membership; one that has m's role already keeps its updatedAt (a PUT of
// what is there changes nothing). m gets the times stored. NotFound when
// the project or user does not exist; Conflict (domain.LastOwnerConflict),
// writing nothing, when it would demote the project's last owner.
func (s *Store) PutMember(ctx context.Context, m *domain.Member) error {
	const op = "store.PutMember"
	row := fromDomainMember(m)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if m.Role != domain.RoleOwner {
			if err := s.keepAnOwner(tx, op, m.ProjectID, m.UserID); err != nil {
				return err
			}
		}
		err := tx.Clauses(clause.OnConflict{
			Columns: []clause.Column{{Name: "project_id"}, {Name: "user_id"}},
			DoUpdates: clause.Assignments(map[string]any{
				"role": gorm.Expr("excluded.role"),
				"updated_at": gorm.Expr("CASE WHEN project_members.role = excluded.role " +
					"THEN project_members.updated_at ELSE excluded.updated_at END"),
			}),
		}).Create(&row).Error
		if err != nil {
			return err
		}
		// The times stored: the member's, when it was one already (the
		// caller's copy of it may be an older one, from a cache).
		return tx.Take(&row, "project_id = ? AND user_id = ?", m.ProjectID, m.UserID).Error
	})
	if err != nil {
		return translate(op, err, nil, func() error {
			e := s.brokenRef(ctx, op, err, ref{"projectId", "project", "projects", m.ProjectID}, ref{"userId", "user", "users", m.UserID})
			if domain.KindOf(e) == domain.Invalid { // the user: a path parameter
				return because(op, domain.NotFoundf("user", m.UserID), err)
			}
			return e
		})
	}
	m.CreatedAt, m.UpdatedAt = utc(row.CreatedAt), utc(row.UpdatedAt)
	return nil
}

// DeleteMember returns NotFound when userID is not a member, and Conflict
// (domain.LastOwnerConflict), deleting nothing, when userID is the
// project's last owner.
func (s *Store) DeleteMember(ctx context.Context, projectID, userID string) error {
	const op = "store.DeleteMember"
	var deleted int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.keepAnOwner(tx, op, projectID, userID); err != nil {
			return err
		}
		res := tx.Where("project_id = ? AND user_id = ?", projectID, userID).Delete(&memberRow{})
		deleted = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return fail(op, err)
	}
	if deleted == 0 {
		return because(op, domain.Errorf(domain.NotFound, "user %s is not a member of project %s", userID, projectID), nil)
	}
	return nil
}

// keepAnOwner returns domain.LastOwnerConflict when userID is the only
// owner of projectID, inside tx, the transaction that is about to demote
// or remove userID. Two such transactions on one project run one after the
// other, so each counts the owners the other left: on PostgreSQL the first
// locks the project's row until it ends; on SQLite every transaction
// begins IMMEDIATE (see sqlitePath), taking the database's write lock
// before it reads.
func (s *Store) keepAnOwner(tx *gorm.DB, op, projectID, userID string) error {
	if s.dialect == Postgres {
		var locked []string
		// NO KEY UPDATE: it excludes the other guards but not the inserts
		// of members, whose foreign key checks take KEY SHARE.
		err := tx.Model(&projectRow{}).Clauses(clause.Locking{Strength: "NO KEY UPDATE"}).
			Where("id = ?", projectID).Pluck("id", &locked).Error
		if err != nil {
			return err
		}
	}
	var owners []string
	err := tx.Model(&memberRow{}).Where("project_id = ? AND role = ?", projectID, string(domain.RoleOwner)).
		Limit(2).Pluck("user_id", &owners).Error
	if err != nil {
		return err
	}
	if len(owners) == 1 && owners[0] == userID {
		return because(op, domain.LastOwnerConflict(projectID), nil)
	}
	return nil
}
