package domain

import (
	"context"
	"time"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	UserID  string
	KeyID   string // "" for the local stdio admin
	IsAdmin bool
	// KeyExpiresAt is when the caller's key stops working; nil when it
	// does not expire. A key it creates must expire by then.
	KeyExpiresAt *time.Time
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the caller. Inbound adapters call it
// after authenticating; services read it with PrincipalFrom.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller carried by ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.UserID != ""
}

func principal(ctx context.Context) (Principal, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return p, Errorf(Unauthenticated, "authentication required: send an API key as 'Authorization: Bearer <key>'")
	}
	return p, nil
}

// Role is a user's role in a project. RoleAdmin is the system role.
type Role string

const (
	RoleViewer Role = "viewer"
	RoleEditor Role = "editor"
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
)

// Valid reports whether r is a project role (admin is not one).
func (r Role) Valid() bool { return r == RoleViewer || r == RoleEditor || r == RoleOwner }

// Permission names an action on a project's resources, as in the seed:
// "chats:CreateChat".
type Permission string

const (
	PermGetProject    Permission = "projects:GetProject"
	PermUpdateProject Permission = "projects:UpdateProject"
	PermDeleteProject Permission = "projects:DeleteProject"
	PermSetLimits     Permission = "projects:SetProjectLimits"

	PermListMembers  Permission = "members:ListMembers"
	PermPutMember    Permission = "members:PutMember"
	PermDeleteMember Permission = "members:DeleteMember"

	PermListProviders  Permission = "aiProviders:ListAIProviders"
	PermGetProvider    Permission = "aiProviders:GetAIProvider"
	PermCreateProvider Permission = "aiProviders:CreateAIProvider"
	PermUpdateProvider Permission = "aiProviders:UpdateAIProvider"
	PermDeleteProvider Permission = "aiProviders:DeleteAIProvider"
	PermUseProvider    Permission = "aiProviders:UseAIProvider"

	PermListDocuments  Permission = "documents:ListDocuments"
	PermGetDocument    Permission = "documents:GetDocument"
	PermCreateDocument Permission = "documents:CreateDocument"
	PermUpdateDocument Permission = "documents:UpdateDocument"
	PermDeleteDocument Permission = "documents:DeleteDocument"

	PermCreateChat           Permission = "chats:CreateChat"
	PermListChats            Permission = "chats:ListChats"
	PermGetChat              Permission = "chats:GetChat"
	PermUpdateChat           Permission = "chats:UpdateChat"
	PermDeleteChat           Permission = "chats:DeleteChat"
	PermCreateChatCompletion Permission = "chats:CreateChatCompletion"

	PermListConversations  Permission = "conversations:ListConversations"
	PermGetConversation    Permission = "conversations:GetConversation"
	PermDeleteConversation Permission = "conversations:DeleteConversation"

	PermGetUsage Permission = "usage:GetUsage"
)

// Authorizer decides whether a role holds a permission. The policy package
// implements it with Casbin over policies/model.conf and policy.csv.
type Authorizer interface {
	// Allowed reports whether role may perform perm. It returns an error
	// only when the policy cannot be evaluated.
	Allowed(role Role, perm Permission) (bool, error)
}

// access answers "may the caller do perm in project?" for every service.
type access struct {
	authz    Authorizer
	members  MemberStore
	projects ProjectStore // for checkProject
}

// check returns nil when the caller may perform perm in projectID. A caller
// who is not a member gets NotFound for what (e.g. "chat", id), so that
// other projects' resources do not leak their existence; a member whose
// role lacks perm gets Forbidden.
func (a access) check(ctx context.Context, projectID string, perm Permission, what, id string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	role, err := a.role(ctx, p, projectID)
	if err != nil {
		return err
	}
	if role == "" {
		if id == projectID { // the project itself, named by the caller
			return notFoundID(what, PrefixProject, id)
		}
		return NotFoundf(what, id)
	}
	ok, err := a.authz.Allowed(role, perm)
	if err != nil {
		return err
	}
	if !ok {
		return Errorf(Forbidden, "your role %q in project %s does not allow %s; ask a project owner for a role that does", role, projectID, perm)
	}
	return nil
}

// checkProject is check for a project the caller names, in the path or as
// a filter. A member's role proves the project exists; an admin's does not,
// so for an admin the project is looked up: a project that does not exist
// is NotFound for everyone, not an empty list or a report of zeros.
func (a access) checkProject(ctx context.Context, projectID string, perm Permission) error {
	if projectID == "" {
		return emptyID("project", PrefixProject)
	}
	if err := a.check(ctx, projectID, perm, "project", projectID); err != nil {
		return err
	}
	if p, _ := PrincipalFrom(ctx); p.IsAdmin {
		_, err := lookup(ctx, PrefixProject, "project", projectID, a.projects.GetProject)
		return err
	}
	return nil
}

// role returns the caller's role in projectID, or "" if it has none.
func (a access) role(ctx context.Context, p Principal, projectID string) (Role, error) {
	if p.IsAdmin {
		return RoleAdmin, nil
	}
	if !validID(PrefixProject, projectID) {
		// No project has this id; and one with a NUL or bytes that are
		// not UTF-8 would fail PostgreSQL's query rather than find nothing.
		return "", nil
	}
	m, err := a.members.GetMember(ctx, projectID, p.UserID)
	if KindOf(err) == NotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return m.Role, nil
}

// visibleTo returns the user id that lists must be restricted to: "" for an
// admin, who sees every project.
func visibleTo(p Principal) string {
	if p.IsAdmin {
		return ""
	}
	return p.UserID
}
