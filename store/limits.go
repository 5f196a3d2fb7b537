package store

import (
	"context"
	"time"

	"gorm.io/gorm/clause"

	"github.com/parleyhq/parley/domain"
)

var _ domain.LimitStore = (*Store)(nil)

type limitsRow struct {
	ProjectID               string    `gorm:"column:project_id;primaryKey"`
	RequestsPerMinute       int       `gorm:"column:requests_per_minute"`
	TokensPerMinute         int       `gorm:"column:tokens_per_minute"`
	KeyRequestsPerMinute    int       `gorm:"column:key_requests_per_minute"`
	KeyTokensPerMinute      int       `gorm:"column:key_tokens_per_minute"`
	ConcurrentStreams       int       `gorm:"column:concurrent_streams"` // since 00016
	ConcurrentStreamsPerKey int       `gorm:"column:concurrent_streams_per_key"`
	UpdatedAt               time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (limitsRow) TableName() string { return "project_limits" }

// GetLimits returns the project's limits; all zero when none were set.
func (s *Store) GetLimits(ctx context.Context, projectID string) (*domain.ProjectLimits, error) {
	var rows []limitsRow
	if err := s.db.WithContext(ctx).Where("project_id = ?", projectID).Limit(1).Find(&rows).Error; err != nil {
		return nil, fail("store.GetLimits", err)
	}
	if len(rows) == 0 {
		return &domain.ProjectLimits{ProjectID: projectID}, nil
	}
	r := rows[0]
	return &domain.ProjectLimits{
		ProjectID: r.ProjectID, RequestsPerMinute: r.RequestsPerMinute, TokensPerMinute: r.TokensPerMinute,
		KeyRequestsPerMinute: r.KeyRequestsPerMinute, KeyTokensPerMinute: r.KeyTokensPerMinute,
		ConcurrentStreams: r.ConcurrentStreams, ConcurrentStreamsPerKey: r.ConcurrentStreamsPerKey, UpdatedAt: utc(r.UpdatedAt),
	}, nil
}

// PutLimits saves l, replacing what was there; NotFound when the project does not exist.
func (s *Store) PutLimits(ctx context.Context, l *domain.ProjectLimits) error {
	const op = "store.PutLimits"
	row := limitsRow{
		ProjectID: l.ProjectID, RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute,
		KeyRequestsPerMinute: l.KeyRequestsPerMinute, KeyTokensPerMinute: l.KeyTokensPerMinute,
		ConcurrentStreams: l.ConcurrentStreams, ConcurrentStreamsPerKey: l.ConcurrentStreamsPerKey, UpdatedAt: ts(l.UpdatedAt),
	}
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{UpdateAll: true}).Create(&row).Error
	if err != nil {
		return translate(op, err, nil, func() error { return because(op, domain.NotFoundf("project", l.ProjectID), err) })
	}
	l.UpdatedAt = row.UpdatedAt
	return nil
}
