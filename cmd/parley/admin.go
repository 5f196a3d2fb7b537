package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/wire"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

const migrateUsage = `usage: parley migrate up|down|status

  up       apply every pending migration
  down     roll back the last applied migration
  status   list the migrations and when each was applied

Only up creates a SQLite database; where there is none yet, down and
status say so and exit 1.
`

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if slices.ContainsFunc(args, isHelp) { // `migrate --help`, `migrate up --help`
		fmt.Fprint(stdout, migrateUsage)
		return nil
	}
	if len(args) != 1 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		return &usageError{"migrate takes one of up, down or status", migrateUsage}
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	dsn := e.DSN() // the database serve opens
	// On stderr, as serve's logs: which database this is, and any
	// misspelt setting, which would have pointed it at another one.
	warnUnknownVars(e.commandLogger(stderr), os.Environ())
	fmt.Fprintf(stderr, "parley migrate %s: %s\n", args[0], store.Describe(dsn))
	// Status and down read, or roll back, the database there is: where
	// there is none they say so, rather than create an empty one (which
	// would hide a PARLEY_DATA_DIR pointing at the wrong place).
	if path := store.SQLiteFile(dsn); path != "" && args[0] != "up" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			return fmt.Errorf("migrate %s: no database exists at %s yet; 'parley migrate up' or 'parley serve' creates it, "+
				"or set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to the one you meant", args[0], path)
		}
	}
	st, err := store.Open(ctx, dsn)
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

const adminUsage = `usage: parley admin <command> [arguments]

commands:
  create-user NAME [--admin]   create a user, an admin with --admin; print its id
  create-key USER_ID [NAME] [--expires-at TIME]
                               create an API key for the user, named NAME (default cli),
                               that stops working at TIME (RFC 3339, e.g. 2027-01-31T00:00:00Z;
                               at most 10 years ahead) or, without it, never; print it
  gen-key                      print a new master key for PARLEY_SECRET_KEY
  gen-api-key                  print a new API key for PARLEY_BOOTSTRAP_ADMIN_KEY
  rotate-key                   re-encrypt provider keys under PARLEY_SECRET_KEY
                               (old keys in PARLEY_OLD_SECRET_KEYS)
  backup PATH                  copy the SQLite database, consistent while Parley
                               runs, to PATH, a new file (mode 0600); the master
                               key is not in it (PostgreSQL: use pg_dump)

Commands other than gen-key, gen-api-key and backup open the configured
database, creating it (and printing its first admin key) when it is new.
`

// adminCommand is a parsed `parley admin` command line.
type adminCommand struct {
	name      string
	args      []string   // positional arguments
	isAdmin   bool       // create-user --admin
	expiresAt *time.Time // create-key --expires-at
}

// adminCommands are the admin commands with their flags (boolean ones,
// and ones that take a value) and how many positional arguments each takes.
var adminCommands = map[string]struct {
	flags, valueFlags []string
	minArgs, maxArgs  int
}{
	"create-user": {[]string{"admin"}, nil, 1, 1},
	"create-key":  {nil, []string{"expires-at"}, 1, 2},
	"gen-key":     {nil, nil, 0, 0},
	"gen-api-key": {nil, nil, 0, 0},
	"rotate-key":  {nil, nil, 0, 0},
	"backup":      {nil, nil, 1, 1},
}

// errHelp is a command line that asks for the usage.
var errHelp = errors.New("help requested")

// parseAdmin parses the arguments of `parley admin`. It returns errHelp
// when they ask for the usage, and a *usageError when they are wrong:
// an unknown command or flag, a flag's value missing or malformed, too
// few or too many arguments, or a name or id that starts with "-". Flags
// may come before or after the other arguments, as --flag or -flag, and
// a flag's value as --flag VALUE or --flag=VALUE.
func parseAdmin(args []string) (adminCommand, error) {
	if len(args) == 0 {
		return adminCommand{}, &usageError{"admin needs a command", adminUsage}
	}
	if isHelp(args[0]) {
		return adminCommand{}, errHelp
	}
	c := adminCommand{name: args[0]}
	spec, ok := adminCommands[c.name]
	if !ok {
		return adminCommand{}, &usageError{fmt.Sprintf("unknown admin command %q", c.name), adminUsage}
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			c.args = append(c.args, a)
			continue
		}
		if a == "-h" || a == "-help" || a == "--help" {
			return adminCommand{}, errHelp
		}
		flag, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		switch {
		case slices.Contains(spec.flags, flag) && !hasValue:
			c.isAdmin = c.isAdmin || flag == "admin"
		case slices.Contains(spec.valueFlags, flag):
			if !hasValue {
				if i+1 == len(args) {
					return adminCommand{}, &usageError{fmt.Sprintf("admin %s: --%s needs a value", c.name, flag), adminUsage}
				}
				i++
				value = args[i]
			}
			if err := c.setValue(flag, value); err != nil {
				return adminCommand{}, &usageError{fmt.Sprintf("admin %s: %s", c.name, err), adminUsage}
			}
		default:
			msg := fmt.Sprintf("admin %s: unknown flag %q", c.name, a)
			if spec.maxArgs > 0 {
				msg += ` (a name or id cannot start with "-")`
			}
			return adminCommand{}, &usageError{msg, adminUsage}
		}
	}
	if n := len(c.args); n < spec.minArgs || n > spec.maxArgs {
		return adminCommand{}, &usageError{fmt.Sprintf("admin %s takes %s, got %d", c.name, argCount(spec.minArgs, spec.maxArgs), n), adminUsage}
	}
	return c, nil
}

// setValue sets the value of a flag that takes one (one of valueFlags).
func (c *adminCommand) setValue(flag, value string) error {
	switch flag {
	case "expires-at":
		if c.expiresAt != nil {
			return errors.New("--expires-at is given twice")
		}
		t, err := wire.ParseDateTime("--expires-at", value)
		if err != nil {
			return errors.New(domain.MessageOf(err))
		}
		c.expiresAt = &t
		return nil
	}
	return fmt.Errorf("--%s is parsed but not set", flag) // adminCommands and this switch disagree
}

// argCount says how many arguments a command takes.
func argCount(lo, hi int) string {
	switch {
	case hi == 0:
		return "no arguments"
	case lo == hi && hi == 1:
		return "one argument"
	case lo == hi:
		return fmt.Sprintf("%d arguments", hi)
	default:
		return fmt.Sprintf("%d to %d arguments", lo, hi)
	}
}

func admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseAdmin(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, adminUsage)
		return nil
	}
	if err != nil {
		return err
	}
	switch c.name {
	case "gen-key":
		fmt.Fprintln(stdout, secret.GenerateKey())
		return nil
	case "gen-api-key":
		fmt.Fprintln(stdout, domain.NewAPIKeySecret())
		return nil
	case "backup":
		return backup(ctx, c.args[0], stdout, stderr)
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	e.Logger = e.logger(stderr)
	a, err := app.Open(ctx, e.Config)
	if err != nil {
		return err
	}
	defer a.Close()
	// On stderr, as serve's: stdout is the command's answer, which a
	// script reads (an id, a key).
	printInitialAdminKey(stderr, a)
	actx := adminContext(ctx)
	switch c.name {
	case "create-user":
		u, err := a.Services.Users.Create(actx, domain.UserCreate{Name: c.args[0], IsAdmin: c.isAdmin})
		if err != nil {
			return errors.New(domain.MessageOf(err))
		}
		fmt.Fprintln(stdout, u.ID)
		return nil
	case "create-key":
		name := "cli"
		if len(c.args) > 1 {
			name = c.args[1]
		}
		k, err := a.Services.Users.CreateAPIKey(actx, c.args[0], domain.APIKeyCreate{Name: name, ExpiresAt: c.expiresAt})
		if err != nil {
			msg := domain.MessageOf(err)
			if domain.DetailsOf(err)["field"] == "expiresAt" { // the API's name for the flag
				msg = strings.Replace(msg, "expiresAt", "--expires-at", 1)
			}
			return errors.New(msg)
		}
		fmt.Fprintln(stdout, k.Secret)
		return nil
	case "rotate-key":
		r, err := a.Services.Providers.RotateKeys(actx)
		fmt.Fprintf(stdout, "re-encrypted %d provider keys; %d of them were not bound to their provider and now are\n", r.Resealed, r.Bound)
		if err != nil && domain.KindOf(err) != domain.Internal {
			return errors.New(domain.MessageOf(err)) // what to fix, without the ops
		}
		if err != nil {
			return err // a fault: the whole chain, as the logs are discarded here
		}
		staleKeyFile(stdout, e.Config)
		return unopenedKeys(r.Unopened)
	}
	return fmt.Errorf("admin %s is parsed but not run", c.name) // parseAdmin and this switch disagree
}

// backup copies the configured SQLite database to path, a new file. It
// opens only a database that exists (a backup of a new, empty one would
// hide a PARLEY_DATA_DIR pointing elsewhere) and runs no migration.
func backup(ctx context.Context, path string, stdout, stderr io.Writer) error {
	e, err := loadEnv()
	if err != nil {
		return err
	}
	warnUnknownVars(e.commandLogger(stderr), os.Environ()) // a misspelt PARLEY_DATA_DIR copies another database
	dsn := e.DSN()
	file := store.SQLiteFile(dsn)
	if file == "" {
		return errors.New("admin backup copies a SQLite database; back up PostgreSQL with pg_dump or the server's own backups")
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("admin backup: no database to copy at %s (%w); set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to the one you meant", file, err)
	}
	fmt.Fprintf(stderr, "parley admin backup: %s\n", store.Describe(dsn))
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Backup(ctx, path); err != nil {
		return fmt.Errorf("admin backup: %w", err)
	}
	fmt.Fprintf(stdout, "copied the database to %s; keep the master key (%s, or PARLEY_SECRET_KEY) apart from it\n", path, app.MasterKeyFile(e.Config))
	return nil
}

// staleKeyFile says, after a rotation on SQLite, that the data
// directory's master key file still holds a key other than
// PARLEY_SECRET_KEY: a start without the variable reads the file, and
// could open none of the keys just sealed again.
func staleKeyFile(stdout io.Writer, cfg app.Config) {
	if cfg.SecretKey == "" || store.DialectOf(cfg.DatabaseURL) != store.SQLite {
		return
	}
	path := app.MasterKeyFile(cfg)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	old, oerr := secret.ParseKey(string(b))
	cur, cerr := secret.ParseKey(cfg.SecretKey)
	if oerr == nil && cerr == nil && secret.KeyID(old) == secret.KeyID(cur) {
		return
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fmt.Fprintf(stdout, "%s still holds the old master key, which a start without PARLEY_SECRET_KEY reads and then opens none of these keys: "+
		"write the new key there (mode 0600), or keep PARLEY_SECRET_KEY set\n", path)
}

// unopenedKeys is the error of a rotate-key that left keys it could not
// open: each by provider and master key id (never a secret), and the fixes.
func unopenedKeys(keys []domain.UnopenedKey) error {
	if len(keys) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "could not open %d provider keys, which are left as they were:\n", len(keys))
	for _, k := range keys {
		why := "which is not loaded"
		if k.Held {
			why = "which is loaded: altered, or copied from another provider's row"
		}
		fmt.Fprintf(&b, "  AI provider %s (master key %s, %s)\n", k.ProviderID, k.MasterKeyID, why)
	}
	b.WriteString("add a master key that is not loaded to PARLEY_OLD_SECRET_KEYS and run rotate-key again; " +
		"for a key whose master key is lost, or that was altered or copied, a project owner must send the provider's apiKey again")
	return errors.New(b.String())
}
