package domain_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policy"
)

// TestBootstrapAdminKeyBounds: PARLEY_BOOTSTRAP_ADMIN_KEY is pk_ and 20 to
// 125 more characters; outside those the start stops with a message that
// gives both bounds, and nothing is stored.
func TestBootstrapAdminKeyBounds(t *testing.T) {
	st := dbtest.SQLite(t)
	authz, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	svcs := domain.NewServices(domain.Deps{Store: st, Authz: authz, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	for _, key := range []string{"pk_" + strings.Repeat("a", 19), "sk_" + strings.Repeat("a", 20), "pk_" + strings.Repeat("a", 126)} {
		err := svcs.Users.EnsureAdminKey(ctx, key)
		if domain.KindOf(err) != domain.Invalid || !strings.Contains(domain.MessageOf(err), `start with "pk_" and have 20 to 125 more characters`) {
			t.Errorf("a key of %d characters starting %s: %v, want invalid giving the bounds", len(key), key[:3], err)
		}
	}
	if _, err := svcs.Users.Authenticate(ctx, "pk_"+strings.Repeat("a", 126)); domain.KindOf(err) != domain.Unauthenticated {
		t.Errorf("the refused key authenticates: %v", err)
	}
	for _, key := range []string{"pk_" + strings.Repeat("a", 20), "pk_" + strings.Repeat("b", 125)} {
		if err := svcs.Users.EnsureAdminKey(ctx, key); err != nil {
			t.Errorf("a key of %d characters: %v", len(key), err)
		}
		if _, err := svcs.Users.Authenticate(ctx, key); err != nil {
			t.Errorf("the ensured key of %d characters does not authenticate: %v", len(key), err)
		}
	}
}
