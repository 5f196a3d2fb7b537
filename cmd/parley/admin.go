package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// openStore opens and migrates the configured database without the rest
// of the app, for migrate and admin.
func openStore(ctx context.Context, e env) (*store.Store, error) {
	dsn := e.DatabaseURL
	if dsn == "" {
		dsn = e.DataDir + "/parley.db"
	}
	return store.Open(ctx, dsn)
}

func migrate(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		return errors.New("usage: parley migrate up|down|status")
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	st, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Migrate(ctx, args[0], stdout)
}

// adminContext is the principal of the admin command: whoever can run it
// already holds the database credentials.
func adminContext(ctx context.Context) context.Context {
	return domain.WithPrincipal(ctx, domain.Principal{UserID: domain.LocalAdminID, IsAdmin: true})
}

func admin(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: parley admin create-user|create-key|gen-key|gen-api-key|rotate-key")
	}
	switch args[0] {
	case "gen-key":
		fmt.Fprintln(stdout, secret.GenerateKey())
		return nil
	case "gen-api-key":
		fmt.Fprintln(stdout, domain.NewAPIKeySecret())
		return nil
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	e.Logger = e.logger(io.Discard)
	a, err := app.Open(ctx, e.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	if a.InitialAdminKey != "" {
		fmt.Fprintf(stdout, "created the first admin key (shown only this once): %s\n", a.InitialAdminKey)
	}
	actx := adminContext(ctx)
	switch args[0] {
	case "create-user":
		if len(args) < 2 {
			return errors.New("usage: parley admin create-user NAME [--admin]")
		}
		isAdmin := len(args) > 2 && args[2] == "--admin"
		u, err := a.Services.Users.Create(actx, domain.UserCreate{Name: args[1], IsAdmin: isAdmin})
		if err != nil {
			return errors.New(domain.MessageOf(err))
		}
		fmt.Fprintln(stdout, u.ID)
		return nil
	case "create-key":
		if len(args) < 2 {
			return errors.New("usage: parley admin create-key USER_ID [NAME]")
		}
		name := "cli"
		if len(args) > 2 {
			name = args[2]
		}
		k, err := a.Services.Users.CreateAPIKey(actx, args[1], name)
		if err != nil {
			return errors.New(domain.MessageOf(err))
		}
		fmt.Fprintln(stdout, k.Secret)
		return nil
	case "rotate-key":
		n, err := a.Services.Providers.RotateKeys(actx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-encrypted %d provider keys\n", n)
		return nil
	}
	return fmt.Errorf("unknown admin command %q", args[0])
}
