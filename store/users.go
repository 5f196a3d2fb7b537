package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// CreateUser inserts u; Conflict when its id exists.
func (s *Store) CreateUser(ctx context.Context, u *domain.User) error {
	const op = "store.CreateUser"
	row := fromDomainUser(u)
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return translate(op, err, func() error { return conflictf(op, err, "user %s already exists", u.ID) }, nil)
	}
	u.CreatedAt = row.CreatedAt
	return nil
}

// GetUser returns NotFound when id does not exist.
func (s *Store) GetUser(ctx context.Context, id string) (*domain.User, error) {
	const op = "store.GetUser"
	var row userRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("user", id), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainUser(&row), nil
}

// ListUsers returns up to p.Limit+1 users with ids after p.After.
func (s *Store) ListUsers(ctx context.Context, p domain.Page) ([]domain.User, error) {
	var rows []userRow
	if err := paged(s.db.WithContext(ctx), "id", p).Find(&rows).Error; err != nil {
		return nil, fail("store.ListUsers", err)
	}
	out := make([]domain.User, len(rows))
	for i := range rows {
		out[i] = *toDomainUser(&rows[i])
	}
	return out, nil
}

// CountUsers returns how many users exist.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.WithContext(ctx).Model(&userRow{}).Count(&n).Error; err != nil {
		return 0, fail("store.CountUsers", err)
	}
	return n, nil
}

// CreateAPIKey inserts k; Conflict when its hash (or id) already exists,
// NotFound when its user does not.
func (s *Store) CreateAPIKey(ctx context.Context, k *domain.APIKey) error {
	const op = "store.CreateAPIKey"
	row := fromDomainAPIKey(k)
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "this API key already exists; generate another") },
			func() error { return because(op, domain.NotFoundf("user", k.UserID), err) })
	}
	k.CreatedAt, k.RevokedAt, k.ExpiresAt = row.CreatedAt, row.RevokedAt, row.ExpiresAt
	return nil
}

// firstAdminLock is the PostgreSQL advisory lock CreateAdmin holds while it
// checks that no user exists and creates the first.
const firstAdminLock = 0x7061726c65790001 // "parley" 0001

// CreateAdmin inserts the user u and its key k in one transaction. With
// onlyFirst it inserts them only while no user exists, and reports whether
// it did: the check and the inserts run one transaction at a time (an
// advisory lock on PostgreSQL, SQLite's write lock taken at BEGIN), so of
// starts racing on an empty database one creates the first admin. The
// lock is taken without onlyFirst too (a start with a bootstrap key), so
// that a start without one, racing it, sees its admin. Conflict
// when k's hash already exists (nothing is inserted then).
func (s *Store) CreateAdmin(ctx context.Context, u *domain.User, k *domain.APIKey, onlyFirst bool) (bool, error) {
	const op = "store.CreateAdmin"
	usr, key := fromDomainUser(u), fromDomainAPIKey(k)
	created := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.dialect == Postgres {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", int64(firstAdminLock)).Error; err != nil {
				return err
			}
		}
		if onlyFirst {
			var exists []string
			if err := tx.Model(&userRow{}).Limit(1).Pluck("id", &exists).Error; err != nil {
				return err
			}
			if len(exists) > 0 {
				return nil
			}
		}
		if err := tx.Create(&usr).Error; err != nil {
			return err
		}
		if err := tx.Create(&key).Error; err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, translate(op, err, func() error { return conflictf(op, err, "this API key already exists; generate another") }, nil)
	}
	if created {
		u.CreatedAt, k.CreatedAt = usr.CreatedAt, key.CreatedAt
	}
	return created, nil
}

// GetAPIKeyByHash returns the key and its user; NotFound when no key has that hash.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash []byte) (*domain.APIKey, *domain.User, error) {
	const op = "store.GetAPIKeyByHash"
	var k apiKeyRow
	if err := s.db.WithContext(ctx).Take(&k, "hash = ?", hash).Error; err != nil {
		if notFound(err) {
			return nil, nil, because(op, domain.Errorf(domain.NotFound, "no API key has this hash"), nil)
		}
		return nil, nil, fail(op, err)
	}
	var u userRow
	if err := s.db.WithContext(ctx).Take(&u, "id = ?", k.UserID).Error; err != nil {
		if notFound(err) { // deleted between the two reads
			return nil, nil, because(op, domain.Errorf(domain.NotFound, "no API key has this hash"), nil)
		}
		return nil, nil, fail(op, err)
	}
	return toDomainAPIKey(&k), toDomainUser(&u), nil
}

// ListAPIKeys returns up to p.Limit+1 keys of userID (revoked ones too).
func (s *Store) ListAPIKeys(ctx context.Context, userID string, p domain.Page) ([]domain.APIKey, error) {
	var rows []apiKeyRow
	q := s.db.WithContext(ctx).Where("user_id = ?", userID)
	if err := paged(q, "id", p).Find(&rows).Error; err != nil {
		return nil, fail("store.ListAPIKeys", err)
	}
	out := make([]domain.APIKey, len(rows))
	for i := range rows {
		out[i] = *toDomainAPIKey(&rows[i])
	}
	return out, nil
}

// RevokeAPIKey sets revokedAt on keyID of userID and returns the key;
// NotFound when it does not exist. Revoking a revoked key keeps the first
// time.
func (s *Store) RevokeAPIKey(ctx context.Context, userID, keyID string, at time.Time) (*domain.APIKey, error) {
	const op = "store.RevokeAPIKey"
	var rows []apiKeyRow
	res := s.db.WithContext(ctx).Model(&rows).Clauses(s.returning(&apiKeyRow{})).
		Where("id = ? AND user_id = ?", keyID, userID).
		Update("revoked_at", gorm.Expr("COALESCE(revoked_at, ?)", ts(at)))
	if err := rowsOrNotFound(op, res, "API key", keyID); err != nil {
		return nil, err
	}
	return toDomainAPIKey(&rows[0]), nil
}
