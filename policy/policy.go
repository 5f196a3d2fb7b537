// Package policy implements domain.Authorizer with Casbin.
package policy

import (
	"fmt"
	"sync"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	stringadapter "github.com/casbin/casbin/v2/persist/string-adapter"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/policies"
)

// Authorizer answers role × permission questions from the Casbin model and
// policy. The policy is fixed for the life of the process (roles come from
// project members, which domain looks up), so decisions are memoized.
type Authorizer struct {
	enforcer *casbin.SyncedEnforcer
	memo     sync.Map // role + " " + perm → bool
}

var _ domain.Authorizer = (*Authorizer)(nil)

// New loads the embedded model and base policy.
func New() (*Authorizer, error) {
	return NewFrom(policies.Model, policies.Policy)
}

// NewFrom loads the given model and policy texts.
func NewFrom(modelText, policyText string) (*Authorizer, error) {
	m, err := model.NewModelFromString(modelText)
	if err != nil {
		return nil, fmt.Errorf("policy: load model: %w", err)
	}
	e, err := casbin.NewSyncedEnforcer(m, stringadapter.NewAdapter(policyText))
	if err != nil {
		return nil, fmt.Errorf("policy: load policy: %w", err)
	}
	return &Authorizer{enforcer: e}, nil
}

// Allowed reports whether role holds perm.
func (a *Authorizer) Allowed(role domain.Role, perm domain.Permission) (bool, error) {
	key := string(role) + " " + string(perm)
	if v, ok := a.memo.Load(key); ok {
		return v.(bool), nil
	}
	ok, err := a.enforcer.Enforce(string(role), string(perm))
	if err != nil {
		return false, domain.Wrap("policy.Allowed", err)
	}
	a.memo.Store(key, ok)
	return ok, nil
}
