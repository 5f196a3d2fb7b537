package domain

import (
	"context"
	"time"
)

// Project owns AI providers, documents, chats and conversations. Every
// permission is checked against the project that owns the resource.
type Project struct {
	ID          string
	Name        string
	Description string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Member is a user's role in a project.
type Member struct {
	ProjectID string
	UserID    string
	Role      Role
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProjectFilter selects projects to list.
type ProjectFilter struct {
	MemberUserID string // only projects this user is a member of; "" for all
	Page         Page
}

// ProjectStore keeps projects.
type ProjectStore interface {
	// CreateProject inserts p and its first member, atomically.
	CreateProject(ctx context.Context, p *Project, owner Member) error
	// GetProject returns NotFound when id does not exist.
	GetProject(ctx context.Context, id string) (*Project, error)
	// ListProjects returns up to f.Page.Limit+1 projects ordered by id.
	ListProjects(ctx context.Context, f ProjectFilter) ([]Project, error)
	// UpdateProject saves p's name, description and updatedAt; NotFound when absent.
	UpdateProject(ctx context.Context, p *Project) error
	// DeleteProject deletes the project and everything it owns; NotFound when absent.
	DeleteProject(ctx context.Context, id string) error
}

// MemberStore keeps project memberships.
type MemberStore interface {
	// GetMember returns NotFound when userID is not a member of projectID.
	GetMember(ctx context.Context, projectID, userID string) (*Member, error)
	// ListMembers returns up to p.Limit+1 members ordered by user id.
	ListMembers(ctx context.Context, projectID string, p Page) ([]Member, error)
	// PutMember inserts or updates m's role.
	PutMember(ctx context.Context, m *Member) error
	// DeleteMember returns NotFound when userID is not a member.
	DeleteMember(ctx context.Context, projectID, userID string) error
	// CountOwners returns how many owners projectID has.
	CountOwners(ctx context.Context, projectID string) (int64, error)
}
