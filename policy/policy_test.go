package policy_test

import (
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/policy"
)

// TestAllowed: each of the 28 permissions, for each role, as the README's
// table of roles says.
func TestAllowed(t *testing.T) {
	a, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		perm                         domain.Permission
		viewer, editor, owner, admin bool
	}{
		{domain.PermGetChat, true, true, true, true},
		{domain.PermListChats, true, true, true, true},
		{domain.PermCreateChat, false, true, true, true},
		{domain.PermUpdateChat, false, true, true, true},
		{domain.PermDeleteChat, false, true, true, true},
		{domain.PermCreateChatCompletion, false, true, true, true},
		{domain.PermUseProvider, false, true, true, true},
		{domain.PermGetProvider, true, true, true, true},
		{domain.PermCreateProvider, false, false, true, true},
		{domain.PermDeleteProvider, false, false, true, true},
		{domain.PermCreateDocument, false, true, true, true},
		{domain.PermGetDocument, true, true, true, true},
		{domain.PermDeleteConversation, false, true, true, true},
		{domain.PermGetConversation, true, true, true, true},
		{domain.PermListMembers, true, true, true, true},
		{domain.PermPutMember, false, false, true, true},
		{domain.PermUpdateProject, false, false, true, true},
		{domain.PermDeleteProject, false, false, true, true},
		{domain.PermGetUsage, true, true, true, true},
		{domain.PermGetProject, true, true, true, true},
		{domain.PermSetLimits, false, false, true, true},
		{domain.PermDeleteMember, false, false, true, true},
		{domain.PermListProviders, true, true, true, true},
		{domain.PermUpdateProvider, false, false, true, true},
		{domain.PermListDocuments, true, true, true, true},
		{domain.PermUpdateDocument, false, true, true, true},
		{domain.PermDeleteDocument, false, true, true, true},
		{domain.PermListConversations, true, true, true, true},
	}
	for _, tt := range tests {
		for role, want := range map[domain.Role]bool{
			domain.RoleViewer: tt.viewer, domain.RoleEditor: tt.editor, domain.RoleOwner: tt.owner, domain.RoleAdmin: tt.admin,
		} {
			t.Run(string(role)+"/"+string(tt.perm), func(t *testing.T) {
				for range 2 { // the second answer comes from the memo
					got, err := a.Allowed(role, tt.perm)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Fatalf("Allowed(%s, %s) = %v, want %v", role, tt.perm, got, want)
					}
				}
			})
		}
	}
	if ok, _ := a.Allowed("stranger", domain.PermGetChat); ok {
		t.Fatal("a role outside the policy was allowed")
	}
}
