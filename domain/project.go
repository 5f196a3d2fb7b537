package domain

import (
	"context"
	"strings"
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
	// UpdateProject saves p's name, description and updatedAt, provided the
	// stored project's updatedAt is still prev (a zero prev: whatever it
	// is); NotFound when absent, StaleUpdate when another write came first.
	UpdateProject(ctx context.Context, p *Project, prev time.Time) error
	// DeleteProject deletes the project and everything it owns; NotFound when absent.
	DeleteProject(ctx context.Context, id string) error
}

// MemberStore keeps project memberships.
type MemberStore interface {
	// GetMember returns NotFound when userID is not a member of projectID.
	GetMember(ctx context.Context, projectID, userID string) (*Member, error)
	// ListMembers returns up to p.Limit+1 members ordered by user id.
	ListMembers(ctx context.Context, projectID string, p Page) ([]Member, error)
	// PutMember inserts or updates m's role. When that would demote the
	// project's last owner it writes nothing and returns LastOwnerConflict;
	// the check and the write are one atomic step.
	PutMember(ctx context.Context, m *Member) error
	// DeleteMember returns NotFound when userID is not a member, and
	// LastOwnerConflict, deleting nothing, when userID is the project's last
	// owner; the check and the delete are one atomic step.
	DeleteMember(ctx context.Context, projectID, userID string) error
}

// Projects manages projects and their members.
type Projects struct {
	store       Store
	access      access
	now         func() time.Time
	completions *Completions // to end the deleted project's running completions
}

// ProjectCreate is the input of Projects.Create.
type ProjectCreate struct {
	Name        string
	Description string
}

// ProjectUpdate changes the fields that are not nil.
type ProjectUpdate struct {
	Name        *string
	Description *string
}

func (in ProjectCreate) validate() error {
	if err := checkName("name", in.Name, true); err != nil {
		return err
	}
	return checkProse("description", in.Description, maxTextLen)
}

// Create makes a project; the caller becomes its owner.
func (s *Projects) Create(ctx context.Context, in ProjectCreate) (*Project, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	now := s.now()
	prj := &Project{ID: NewID(PrefixProject), Name: strings.TrimSpace(in.Name), Description: in.Description, CreatedAt: now, UpdatedAt: now}
	owner := Member{ProjectID: prj.ID, UserID: p.UserID, Role: RoleOwner, CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateProject(ctx, prj, owner); err != nil {
		return nil, Wrap("projects.Create", err)
	}
	return prj, nil
}

// Get returns a project the caller can see.
func (s *Projects) Get(ctx context.Context, id string) (*Project, error) {
	if err := s.access.check(ctx, id, PermGetProject, "project", id); err != nil {
		return nil, err
	}
	return lookup(ctx, PrefixProject, "project", id, s.store.GetProject)
}

// List returns the projects the caller can see.
func (s *Projects) List(ctx context.Context, page Page) (List[Project], error) {
	p, err := principal(ctx)
	if err != nil {
		return List[Project]{}, err
	}
	page, err = page.normalize(PrefixProject)
	if err != nil {
		return List[Project]{}, err
	}
	items, err := s.store.ListProjects(ctx, ProjectFilter{MemberUserID: visibleTo(p), Page: page})
	if err != nil {
		return List[Project]{}, Wrap("projects.List", err)
	}
	return paginate(items, page, func(p Project) string { return p.ID }), nil
}

// Update changes a project's name or description, the fields in sets
// (owner), on top of any write that came first (untilFresh).
func (s *Projects) Update(ctx context.Context, id string, in ProjectUpdate) (*Project, error) {
	return untilFresh(func() (*Project, error) { return s.update(ctx, id, in) })
}

func (s *Projects) update(ctx context.Context, id string, in ProjectUpdate) (*Project, error) {
	if err := s.access.check(ctx, id, PermUpdateProject, "project", id); err != nil {
		return nil, err
	}
	prj, err := lookup(ctx, PrefixProject, "project", id, s.store.GetProject)
	if err != nil {
		return nil, err
	}
	before := *prj
	if err := emptyWhenSent("name", in.Name, "project"); err != nil {
		return nil, err
	}
	if in.Name != nil {
		prj.Name = trimRequired(*in.Name)
	}
	if in.Description != nil {
		prj.Description = *in.Description
	}
	// What was sent is checked: a name or description stored before they
	// took no control character is kept, so that an update of the other
	// is not refused for it.
	if err := checkUpdatedName("name", prj.Name, true, &before.Name); err != nil {
		return nil, err
	}
	if in.Description != nil && prj.Description != before.Description {
		if err := checkProse("description", prj.Description, maxTextLen); err != nil {
			return nil, err
		}
	}
	if unchanged(before, prj) {
		return prj, nil
	}
	prj.UpdatedAt = s.now()
	if err := s.store.UpdateProject(ctx, prj, before.UpdatedAt); err != nil {
		return nil, Wrap("projects.Update", err)
	}
	return prj, nil
}

// Delete removes a project and everything it owns (owner).
func (s *Projects) Delete(ctx context.Context, id string) error {
	if err := s.access.check(ctx, id, PermDeleteProject, "project", id); err != nil {
		return err
	}
	if !validID(PrefixProject, id) { // an admin passes check for any id
		return NotFoundf("project", id)
	}
	if err := s.store.DeleteProject(ctx, id); err != nil {
		return Wrap("projects.Delete", err)
	}
	s.completions.abandon(func(c *continuation) bool { return c.project == id }, "project", id)
	return nil
}

// ListMembers lists a project's members.
func (s *Projects) ListMembers(ctx context.Context, projectID string, page Page) (List[Member], error) {
	if err := s.access.checkProject(ctx, projectID, PermListMembers); err != nil {
		return List[Member]{}, err
	}
	page, err := page.normalizeIn(PrefixUser, projectID)
	if err != nil {
		return List[Member]{}, err
	}
	items, err := s.store.ListMembers(ctx, projectID, page)
	if err != nil {
		return List[Member]{}, Wrap("projects.ListMembers", err)
	}
	return paginate(items, page, cursorIn(projectID, func(m Member) string { return m.UserID })), nil
}

// PutMember gives userID a role in the project (owner). The last owner
// cannot be demoted.
func (s *Projects) PutMember(ctx context.Context, projectID, userID string, role Role) (*Member, error) {
	if err := s.access.checkProject(ctx, projectID, PermPutMember); err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, Invalidf("role", "role must be one of viewer, editor, owner")
	}
	if _, err := lookup(ctx, PrefixUser, "user", userID, s.store.GetUser); err != nil {
		return nil, err
	}
	old, err := s.store.GetMember(ctx, projectID, userID)
	if err != nil && KindOf(err) != NotFound {
		return nil, Wrap("projects.PutMember", err)
	}
	now := s.now()
	m := &Member{ProjectID: projectID, UserID: userID, Role: role, CreatedAt: now, UpdatedAt: now}
	if old != nil {
		m.CreatedAt = old.CreatedAt
	}
	// The store refuses to demote the last owner, checking as it writes.
	if err := s.store.PutMember(ctx, m); err != nil {
		return nil, Wrap("projects.PutMember", err)
	}
	return m, nil
}

// DeleteMember removes userID from the project: an owner removes anyone,
// and any member may remove itself (leave). The last owner cannot be
// removed.
func (s *Projects) DeleteMember(ctx context.Context, projectID, userID string) error {
	perm := PermDeleteMember
	if p, _ := PrincipalFrom(ctx); p.UserID != "" && p.UserID == userID {
		perm = PermGetProject // leaving asks only that the caller see the project
	}
	if err := s.access.checkProject(ctx, projectID, perm); err != nil {
		return err
	}
	if !validID(PrefixUser, userID) {
		return notFoundID("member", PrefixUser, userID)
	}
	// The store refuses to delete the last owner, checking as it deletes.
	err := s.store.DeleteMember(ctx, projectID, userID)
	if KindOf(err) == NotFound {
		return NotFoundf("member", userID)
	}
	return Wrap("projects.DeleteMember", err)
}

// LastOwnerConflict is the error of a MemberStore asked to demote or
// remove a project's last owner.
func LastOwnerConflict(projectID string) *Error {
	return Errorf(Conflict, "project %s must keep at least one owner; make another member owner first", projectID)
}
