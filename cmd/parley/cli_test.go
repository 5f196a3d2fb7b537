package main_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// parley runs the binary in dir with env (after a clean configuration)
// and returns its combined output and exit code; a run that does not end
// within 20s is killed and fails the test.
func parley(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PARLEY_ADDR=127.0.0.1:0", "PARLEY_DATABASE_URL=", "PARLEY_DATA_DIR=",
		"PARLEY_SECRET_KEY=", "PARLEY_BOOTSTRAP_ADMIN_KEY=", "PARLEY_LOG_LEVEL=", "PARLEY_LOG_FORMAT="}, env...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("parley %s was still running after 20s:\n%s", strings.Join(args, " "), out)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("parley %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// files lists what is in dir, to show that a command touched nothing.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if path != dir {
			names = append(names, strings.TrimPrefix(path, dir+string(filepath.Separator)))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDatabaseURLOtherSchemeRefused: a PARLEY_DATABASE_URL that is neither
// PostgreSQL's URL nor SQLite's stops the start, naming the variable and
// what it takes but not the password, instead of serving SQLite in a
// file named after the URL.
func TestDatabaseURLOtherSchemeRefused(t *testing.T) {
	const password = "S3cretPassw0rd"
	for name, url := range map[string]string{
		"mysql":          "mysql://root:" + password + "@127.0.0.1:3306/parley",
		"key=value":      "host=127.0.0.1 user=postgres password=" + password + " dbname=zz",
		"postgres no //": "postgres:root:" + password + "@127.0.0.1/parley",
		"file":           "file:parley.db?password=" + password,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=" + url}, "serve")
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
			if !strings.Contains(out, "PARLEY_DATABASE_URL") || !strings.Contains(out, "postgres://") {
				t.Errorf("the error does not name PARLEY_DATABASE_URL and what it takes:\n%s", out)
			}
			if strings.Contains(out, password) {
				t.Errorf("the output shows the password:\n%s", out)
			}
			if got := files(t, dir); len(got) > 0 {
				t.Errorf("the refused start created %q", got)
			}
		})
	}
}

// TestDatabaseURLSchemeAnyCase: "POSTGRES://" is a PostgreSQL URL (URL
// schemes are case-insensitive), not the path of a SQLite file.
func TestDatabaseURLSchemeAnyCase(t *testing.T) {
	dir := t.TempDir()
	// Nothing listens on port 1: the connection is refused, and with a
	// connect_timeout not asked again.
	out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=POSTGRES://postgres:S3cretPassw0rd@127.0.0.1:1/parley?connect_timeout=1"}, "migrate", "status")
	if code == 0 || !strings.Contains(out, "open postgres database") {
		t.Errorf("exit %d, want a failure to reach PostgreSQL:\n%s", code, out)
	}
	if got := files(t, dir); len(got) > 0 {
		t.Errorf("created %q", got)
	}
}

// TestDatabaseURLPasswordWithAt: a password with an unencoded @ ends the
// user information at its first @ (as libpq reads it), so the driver took
// the rest of the password for the host and every connection error named
// it. The start is refused, saying to percent-encode the @, and shows no
// part of the password.
func TestDatabaseURLPasswordWithAt(t *testing.T) {
	for _, url := range []string{
		"postgres://parley:S3cret@Passw0rd@127.0.0.1:1/parley",
		"postgresql://parley:S3cret@Pass:w0rd@127.0.0.1:1/parley",
		"postgres://parley:S3cret@Passw0rd@127.0.0.1:1",
	} {
		for _, cmd := range [][]string{{"serve"}, {"migrate", "status"}} {
			t.Run(strings.Join(cmd, " "), func(t *testing.T) {
				dir := t.TempDir()
				out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=" + url}, cmd...)
				if code != 1 {
					t.Errorf("exit %d, want 1:\n%s", code, out)
				}
				if !strings.Contains(out, "PARLEY_DATABASE_URL") || !strings.Contains(out, "%40") {
					t.Errorf("the error does not name PARLEY_DATABASE_URL and say to write @ as %%40:\n%s", out)
				}
				for _, part := range []string{"S3cret", "Pass"} {
					if strings.Contains(out, part) {
						t.Errorf("the output shows part of the password (%q):\n%s", part, out)
					}
				}
				if got := files(t, dir); len(got) > 0 {
					t.Errorf("the refused start created %q", got)
				}
			})
		}
	}
}

// TestDatabaseURLSchemeAnyCaseOnPostgres: with a server, "POSTGRESQL://"
// migrates and lists PostgreSQL's schema.
func TestDatabaseURLSchemeAnyCaseOnPostgres(t *testing.T) {
	url := dbtest.PostgresURL(t)
	_, rest, ok := strings.Cut(url, "://")
	if !ok {
		t.Fatalf("%s is no URL", dbtest.EnvURL)
	}
	dir := t.TempDir()
	out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=POSTGRESQL://" + rest}, "migrate", "status")
	if code != 0 || !strings.Contains(out, "00001") {
		t.Errorf("migrate status: exit %d:\n%s", code, out)
	}
	if got := files(t, dir); len(got) > 0 {
		t.Errorf("created %q", got)
	}
}

// TestMigrateStatusWritesNothingOnPostgres: status on a database nothing
// was migrated on (one named by mistake, or by a read-only role) lists
// every migration as pending, aligned, and leaves no table behind; so
// does down, which says there is nothing to roll back.
func TestMigrateStatusWritesNothingOnPostgres(t *testing.T) {
	url := dbtest.EmptyPostgresURL(t)
	env := []string{"PARLEY_DATABASE_URL=" + url, "PARLEY_SECRET_KEY=" + strings.Repeat("A", 43) + "="}
	if out, code := parley(t, t.TempDir(), env, "migrate", "down"); code != 0 || !strings.Contains(out, "nothing to roll back") {
		t.Errorf("migrate down on an empty database: exit %d, want 0 saying nothing to roll back:\n%s", code, out)
	}
	out, code := parley(t, t.TempDir(), env, "migrate", "status")
	if code != 0 || !regexp.MustCompile(`(?m)^00001_init\.sql +pending$`).MatchString(out) || !regexp.MustCompile(`(?m)^00015_document_names\.sql +pending$`).MatchString(out) {
		t.Errorf("migrate status on an empty database: exit %d, want 0 listing every migration pending:\n%s", code, out)
	}
	var cols []int
	for line := range strings.Lines(out) {
		if i := strings.Index(line, " pending"); i > 0 && strings.HasPrefix(line, "000") {
			cols = append(cols, strings.LastIndexByte(line[:i+1], ' '))
		}
	}
	if len(cols) == 0 || slices.Min(cols) != slices.Max(cols) {
		t.Errorf("the states are not in one column:\n%s", out)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("migrate down and status left %d tables in an empty database", tables)
	}
}

// TestDatabaseURLSQLiteForms: the SQLite forms PARLEY_DATABASE_URL took
// before keep working: sqlite:PATH (in any case) and a plain path.
func TestDatabaseURLSQLiteForms(t *testing.T) {
	for url, file := range map[string]string{
		"sqlite:a.db":        "a.db",
		"SQLite:b.db":        "b.db",
		"sqlite://sub/c.db":  "sub/c.db",
		"d.db":               "d.db",
		"sub2/e.db?_txlock=": "sub2/e.db",
	} {
		dir := t.TempDir()
		if out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=" + url}, "migrate", "up"); code != 0 {
			t.Errorf("%s: exit %d:\n%s", url, code, out)
		}
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			t.Errorf("%s: no database at %s: %v (have %q)", url, file, err, files(t, dir))
		}
	}
}

// TestCommandLineCheckedFirst: a command line parley cannot run exits 2
// with the usage, and one asking for help prints it and exits 0; neither
// opens or creates a database or a master key.
func TestCommandLineCheckedFirst(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"admin", "bogus"}, 2, `unknown admin command "bogus"`},
		{[]string{"admin"}, 2, "usage: parley admin"},
		{[]string{"admin", "--help"}, 0, "usage: parley admin"},
		{[]string{"admin", "-h"}, 0, "usage: parley admin"},
		{[]string{"admin", "help"}, 0, "usage: parley admin"},
		{[]string{"admin", "create-user", "--help"}, 0, "usage: parley admin"},
		{[]string{"admin", "create-user"}, 2, "takes one argument"},
		{[]string{"admin", "create-user", "bob", "--admn"}, 2, `unknown flag "--admn"`},
		{[]string{"admin", "create-user", "-bob"}, 2, `unknown flag "-bob"`},
		{[]string{"admin", "create-user", "bob", "alice"}, 2, "takes one argument"},
		{[]string{"admin", "create-key"}, 2, "takes 1 to 2 arguments"},
		{[]string{"admin", "create-key", "usr_x", "laptop", "extra"}, 2, "takes 1 to 2 arguments"},
		{[]string{"admin", "create-key", "usr_x", "--admin"}, 2, `unknown flag "--admin"`},
		{[]string{"admin", "create-key", "usr_x", "--expires-at"}, 2, "admin create-key: --expires-at needs a value"},
		{[]string{"admin", "create-key", "usr_x", "--expires-at", "soon"}, 2, "--expires-at must be an RFC 3339 time with a UTC offset"},
		{[]string{"admin", "create-key", "usr_x", "--expires-at=2030-01-01"}, 2, "--expires-at must be an RFC 3339 time with a UTC offset"},
		{[]string{"admin", "create-key", "usr_x", "--expires-at", "2030-01-01T00:00:00Z", "--expires-at", "2031-01-01T00:00:00Z"}, 2, "--expires-at is given twice"},
		{[]string{"admin", "create-user", "bob", "--expires-at=2030-01-01T00:00:00Z"}, 2, `unknown flag "--expires-at=2030-01-01T00:00:00Z"`},
		{[]string{"admin", "create-user", "bob", "--admin=true"}, 2, `unknown flag "--admin=true"`},
		{[]string{"admin", "gen-key", "extra"}, 2, "takes no arguments"},
		{[]string{"admin", "gen-api-key", "--force"}, 2, `unknown flag "--force"`},
		{[]string{"admin", "rotate-key", "now"}, 2, "takes no arguments"},
		{[]string{"migrate"}, 2, "usage: parley migrate"},
		{[]string{"migrate", "sideways"}, 2, "usage: parley migrate"},
		{[]string{"migrate", "--help"}, 0, "usage: parley migrate"},
		{[]string{"help", "admin"}, 0, "usage: parley admin"},
		{[]string{"help", "migrate"}, 0, "usage: parley migrate"},
		{[]string{"help", "bogus"}, 2, `unknown command "bogus"`},
		{[]string{"migrate", "up", "--help"}, 0, "usage: parley migrate"},
		{[]string{"serve", "--help"}, 0, "usage: parley"},
		{[]string{"serve", "now"}, 2, "takes no arguments"},
		{[]string{"version", "x"}, 2, "version takes no arguments"},
		{[]string{"mcp", "--help"}, 0, "usage: parley"},
		{[]string{"mcp", "--read-onyl"}, 2, `unknown argument "--read-onyl"`},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{nil, 2, "no command given"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out, code := parley(t, dir, nil, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
			if printedKey.MatchString(out) {
				t.Errorf("printed an admin key:\n%s", out)
			}
			if got := files(t, dir); len(got) > 0 {
				t.Errorf("created %q", got)
			}
		})
	}
}

// TestUsageNamesAdminCommandsAsAdminHelp: `parley help` lists every admin
// command with the arguments and flags `parley admin help` gives it, so
// neither usage leaves out what the other offers.
func TestUsageNamesAdminCommandsAsAdminHelp(t *testing.T) {
	dir := t.TempDir()
	top, code := parley(t, dir, nil, "help")
	if code != 0 {
		t.Fatalf("parley help: exit %d:\n%s", code, top)
	}
	admin, code := parley(t, dir, nil, "admin", "help")
	if code != 0 {
		t.Fatalf("parley admin help: exit %d:\n%s", code, admin)
	}
	var n int
	for _, line := range strings.Split(admin, "\n") {
		rest, ok := strings.CutPrefix(line, "  ")
		if !ok || rest == "" || rest[0] == ' ' {
			continue // not a command's first line
		}
		synopsis, _, _ := strings.Cut(rest, "  ")
		n++
		if want := "admin " + synopsis; !strings.Contains(top, want) {
			t.Errorf("parley help does not list %q:\n%s", want, top)
		}
	}
	if n == 0 {
		t.Fatalf("found no commands in parley admin help:\n%s", admin)
	}
}

// TestAdminCreateUserFlag: --admin may come before or after the name and
// makes an admin; without it the user is not one.
func TestAdminCreateUserFlag(t *testing.T) {
	dir := t.TempDir()
	var key string // the first admin key, printed by the first command
	create := func(args ...string) string {
		t.Helper()
		out, code := parley(t, dir, nil, append([]string{"admin", "create-user"}, args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || !strings.HasPrefix(lines[len(lines)-1], "usr_") {
			t.Fatalf("create-user %s: exit %d:\n%s", strings.Join(args, " "), code, out)
		}
		if m := printedKey.FindStringSubmatch(out); m != nil {
			key = m[1]
		}
		return lines[len(lines)-1]
	}
	want := map[string]bool{ // by user id: whether an admin
		create("--admin", "bob"):  true,
		create("carol", "-admin"): true,
		create("dave"):            false,
	}
	if key == "" {
		t.Fatal("the first admin command on a new database printed no admin key")
	}

	s := serve(t, dir)
	defer s.stop(t)
	users := api(t, s, key, "GET", "/api/v1/users?limit=100", 200, nil)["data"].([]any)
	seen := 0
	for _, u := range users {
		u := u.(map[string]any)
		id, name := u["id"].(string), u["name"].(string)
		if strings.HasPrefix(name, "-") {
			t.Errorf("created a user named %q", name)
		}
		if isAdmin, ok := want[id]; ok {
			seen++
			if u["isAdmin"] != isAdmin {
				t.Errorf("%s (%s): isAdmin %v, want %v", name, id, u["isAdmin"], isAdmin)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("listed %d of the %d users created: %v", seen, len(want), users)
	}
}

// TestAdminAnswersAloneOnStdout: an admin command's stdout is its answer
// alone, which a script reads (U=$(parley admin create-user ...)); the
// admin key a first start made goes to stderr, as serve's does.
func TestAdminAnswersAloneOnStdout(t *testing.T) {
	cmd := exec.Command(bin, "admin", "create-user", "carol", "--admin")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_DATA_DIR=", "PARLEY_SECRET_KEY=", "PARLEY_BOOTSTRAP_ADMIN_KEY=")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v:\n%s%s", err, stdout.String(), stderr.String())
	}
	if out := stdout.String(); !regexp.MustCompile(`^usr_\w+\n$`).MatchString(out) {
		t.Errorf("stdout %q, want the user id alone", out)
	}
	if !printedKey.MatchString(stderr.String()) {
		t.Errorf("the first start's admin key is not on stderr:\n%s", stderr.String())
	}
}

// TestCommandsNameTheirDatabase: a misspelt setting would point migrate
// or admin at a new SQLite database in ./data, silently: both warn of it,
// as serve does, and migrate says which database it opened, on stderr,
// where scripts do not read answers. A PostgreSQL one is named without its
// password.
func TestCommandsNameTheirDatabase(t *testing.T) {
	dir := t.TempDir()
	typo := "PARLEY_DATABSE_URL=postgres://postgres:hunter2@127.0.0.1:1/parley"
	warning := "PARLEY_DATABSE_URL is not a Parley setting and is ignored; did you mean PARLEY_DATABASE_URL?"
	abs, _ := filepath.Abs(filepath.Join(dir, "data", "parley.db"))
	for _, args := range [][]string{{"migrate", "up"}, {"admin", "create-user", "eve"}, {"migrate", "status"}} {
		out, code := parley(t, dir, []string{typo}, args...)
		if code != 0 || !strings.Contains(out, warning) {
			t.Errorf("parley %v with a misspelt PARLEY_DATABASE_URL: exit %d, want 0 and a warning naming it:\n%s", args, code, out)
		}
		if args[0] == "migrate" && !strings.Contains(out, "parley "+strings.Join(args, " ")+": the SQLite database at "+abs) {
			t.Errorf("parley %v did not name the database it opened (%s):\n%s", args, abs, out)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("parley %v printed a password:\n%s", args, out)
		}
	}
	out, code := parley(t, dir, []string{"PARLEY_DATABASE_URL=postgres://postgres:hunter2@127.0.0.1:1/parley?connect_timeout=1",
		"PARLEY_SECRET_KEY=" + strings.Repeat("A", 43) + "="}, "migrate", "status")
	if code != 1 || !strings.Contains(out, `parley migrate status: the PostgreSQL database "parley" on 127.0.0.1:1`) || strings.Contains(out, "hunter2") {
		t.Errorf("migrate status on PostgreSQL that does not answer: exit %d, want 1, naming the database without its password:\n%s", code, out)
	}
}

// TestAdminCreateKeyExpiresAt: create-key --expires-at makes a key that
// expires then (the flag before or after the other arguments, as
// --flag VALUE or --flag=VALUE); a time that has passed exits 1 with the
// domain's message and makes no key.
func TestAdminCreateKeyExpiresAt(t *testing.T) {
	dir := t.TempDir()
	out, code := parley(t, dir, nil, "admin", "create-user", "ci")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	m := printedKey.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("create-user: exit %d:\n%s", code, out)
	}
	admin, user := m[1], lines[len(lines)-1]
	exp := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	for _, args := range [][]string{
		{user, "deploy", "--expires-at", exp.Format(time.RFC3339)},
		{"--expires-at=" + exp.In(time.FixedZone("", -5*3600)).Format(time.RFC3339), user},
	} {
		if out, code := parley(t, dir, nil, append([]string{"admin", "create-key"}, args...)...); code != 0 || !printedKey.MatchString(out) {
			t.Fatalf("create-key %s: exit %d:\n%s", strings.Join(args, " "), code, out)
		}
	}
	out, code = parley(t, dir, nil, "admin", "create-key", user, "late", "--expires-at", "2020-01-01T00:00:00Z")
	if code != 1 || !strings.Contains(out, "--expires-at must be in the future: 2020-01-01T00:00:00Z has passed") || printedKey.MatchString(out) {
		t.Errorf("create-key with a past expiry: exit %d, want 1 saying it has passed:\n%s", code, out)
	}

	s := serve(t, dir)
	defer s.stop(t)
	keys := api(t, s, admin, "GET", "/api/v1/users/"+user+"/api-keys", 200, nil)["data"].([]any)
	if len(keys) != 2 {
		t.Fatalf("%d keys, want the 2 made: %v", len(keys), keys)
	}
	want := exp.Format("2006-01-02T15:04:05.000Z")
	for _, k := range keys {
		if got := k.(map[string]any)["expiresAt"]; got != want {
			t.Errorf("key %v: expiresAt %v, want %s", k.(map[string]any)["name"], got, want)
		}
	}
}

// TestMigrateDownWithNothingApplied: rolling back with nothing applied
// says so in Parley's words, not goose's "no next version found".
func TestMigrateDownWithNothingApplied(t *testing.T) {
	dir := t.TempDir()
	// An empty file is an empty SQLite database.
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "parley.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := parley(t, dir, nil, "migrate", "down")
	if code != 0 || !strings.Contains(out, "nothing to roll back") || strings.Contains(out, "no next version") {
		t.Errorf("exit %d, want 0 and %q:\n%s", code, "nothing to roll back", out)
	}
}

// TestMigrateStatusAndDownCreateNothing: where no SQLite database exists,
// `migrate status` and `migrate down` (which only read or roll back what
// is there) say so, with its path and what creates it, exit 1, and create
// nothing, not even its directory; `migrate up` then creates it.
func TestMigrateStatusAndDownCreateNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		file string
	}{
		{"default", nil, "data/parley.db"},
		{"PARLEY_DATA_DIR", []string{"PARLEY_DATA_DIR=var/parley"}, "var/parley/parley.db"},
		{"sqlite:PATH", []string{"PARLEY_DATABASE_URL=sqlite:db/x.db"}, "db/x.db"},
		{"path with a query", []string{"PARLEY_DATABASE_URL=y.db?_txlock=deferred"}, "y.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			want := "no database exists at " + filepath.Join(dir, tc.file) + " yet"
			for _, cmd := range []string{"status", "down"} {
				out, code := parley(t, dir, tc.env, "migrate", cmd)
				if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "'parley migrate up'") {
					t.Errorf("migrate %s: exit %d, want 1 with %q and what creates it:\n%s", cmd, code, want, out)
				}
				if got := files(t, dir); len(got) > 0 {
					t.Fatalf("migrate %s created %q", cmd, got)
				}
			}
			if out, code := parley(t, dir, tc.env, "migrate", "up"); code != 0 {
				t.Fatalf("migrate up: exit %d:\n%s", code, out)
			}
			if out, code := parley(t, dir, tc.env, "migrate", "status"); code != 0 || !strings.Contains(out, "applied") {
				t.Errorf("migrate status after up: exit %d:\n%s", code, out)
			}
		})
	}
}

// TestConcurrentMigrationsOnSQLite: processes that migrate one SQLite
// database at once (parley serve and an MCP client's parley mcp starting
// on a new data directory or after an upgrade) migrate one at a time, as
// PostgreSQL's replicas do: each starts, none fails on a migration another
// applied meanwhile ("table users already exists"), and each migration is
// recorded once.
func TestConcurrentMigrationsOnSQLite(t *testing.T) {
	const starts, rounds = 4, 3
	for round := range rounds {
		dir := t.TempDir()
		outs := make([]string, starts)
		var wg sync.WaitGroup
		for i := range starts {
			wg.Go(func() {
				args := []string{"migrate", "up"}
				if i%2 == 1 {
					args = []string{"admin", "create-user", "u"} // migrates as serve and mcp do
				}
				out, code := parley(t, dir, nil, args...)
				if code != 0 {
					t.Errorf("round %d: parley %s exited %d:\n%s", round, strings.Join(args, " "), code, out)
				}
				outs[i] = out
			})
		}
		wg.Wait()
		st, err := store.Open(context.Background(), filepath.Join(dir, "data", "parley.db"))
		if err != nil {
			t.Fatal(err)
		}
		var rows, versions int
		err = st.DB().Raw("SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0").Row().Scan(&rows, &versions)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rows != versions {
			t.Errorf("round %d: %d migrations recorded %d times", round, versions, rows)
		}
	}
}

// TestMigrateOnANewerSchema: a database a newer parley migrated past this
// one's last migration is left as it is; down says why it cannot roll
// back (not goose's "version not found"), and status and up say the
// schema is newer than this parley.
func TestMigrateOnANewerSchema(t *testing.T) {
	dir := t.TempDir()
	if out, code := parley(t, dir, nil, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: exit %d:\n%s", code, out)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "data", "parley.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var last int64
	if err := st.DB().Raw("SELECT max(version_id) FROM goose_db_version").Row().Scan(&last); err != nil {
		t.Fatal(err)
	}
	newer := last + 1
	if err := st.DB().Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, true)", newer).Error; err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("version %d", newer)
	out, code := parley(t, dir, nil, "migrate", "down")
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "newer parley") || strings.Contains(out, "version not found") {
		t.Errorf("migrate down on a newer schema: exit %d, want 1 naming %s and a newer parley:\n%s", code, want, out)
	}
	for _, cmd := range []string{"status", "up"} {
		out, code := parley(t, dir, nil, "migrate", cmd)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "newer parley") {
			t.Errorf("migrate %s on a newer schema: exit %d, want 0 naming %s and a newer parley:\n%s", cmd, code, want, out)
		}
	}
	var applied int
	if err := st.DB().Raw("SELECT count(*) FROM goose_db_version WHERE version_id IN (?, ?)", last, newer).Row().Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 2 {
		t.Errorf("migrate down on a newer schema changed it: %d of versions %d and %d still applied", applied, last, newer)
	}
}

// TestEnvMistakesNamed: a PARLEY_DATABASE_URL of sqlite: with no file (an
// unset variable after it), which would put the database in ./data away
// from PARLEY_DATA_DIR's master key, and a PARLEY_ADDR no listener takes
// stop the start naming the variable, before any file is made.
func TestEnvMistakesNamed(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"PARLEY_DATABASE_URL=sqlite:"}, []string{"migrate", "up"}, "PARLEY_DATABASE_URL is sqlite: with no file after it"},
		{[]string{"PARLEY_DATABASE_URL=sqlite://"}, []string{"migrate", "up"}, "PARLEY_DATABASE_URL is sqlite: with no file after it"},
		{[]string{"PARLEY_ADDR=localhost"}, []string{"serve"}, `PARLEY_ADDR "localhost"`},
		{[]string{"PARLEY_ADDR=http://127.0.0.1:8080"}, []string{"serve"}, "set it to a free HOST:PORT"},
		{[]string{"PARLEY_DATA_DIR=/dev/null/data"}, []string{"migrate", "up"}, "set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to a directory"},
		{[]string{"PARLEY_BOOTSTRAP_ADMIN_KEY=nope"}, []string{"serve"}, "parley: PARLEY_BOOTSTRAP_ADMIN_KEY must start with"},
		{[]string{"PARLEY_OLD_SECRET_KEYS=" + strings.Repeat("A", 43) + "=,nope"}, []string{"serve"}, "PARLEY_OLD_SECRET_KEYS, its entry 2 of 2: "},
	} {
		dir := t.TempDir()
		env := append([]string{"PARLEY_DATA_DIR=" + filepath.Join(dir, "data")}, tc.env...)
		out, code := parley(t, dir, env, tc.args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%v %v: exit %d:\n%s\nwant exit 1 saying %q", tc.env, tc.args, code, out, tc.want)
		}
		if got := files(t, dir); len(got) != 0 {
			t.Errorf("%v: files made: %q", tc.env, got)
		}
	}
}

// TestUnreadableMasterKeyStopsFirst: a master.key that cannot be read (a
// directory here; its owner and mode after a restore as root) stops the
// start saying what to check, before a database is made and migrated.
func TestUnreadableMasterKeyStopsFirst(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "master.key"), 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := parley(t, dir, []string{"PARLEY_DATA_DIR=" + data}, "serve")
	if code != 1 || !strings.Contains(out, "cannot be read") || !strings.Contains(out, "owner and mode") {
		t.Errorf("serve with an unreadable master.key: exit %d:\n%s\nwant exit 1 saying to check its owner and mode", code, out)
	}
	if _, err := os.Stat(filepath.Join(data, "parley.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a database was made before the start failed: %v", err)
	}
}

// TestDataDirNotWritableSaysSo: run as another user (nobody) in a data
// directory it may not write, a start says what to check, whether the
// database is still to be made or is there, writable by all, with no room
// beside it for SQLite's -wal and -shm files. Only root can set this up.
func TestDataDirNotWritableSaysSo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running parley as another user needs root")
	}
	const nobody = 65534
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	must(os.Chmod(filepath.Dir(dir), 0o755)) // the test's own, made 0700
	must(os.Chmod(dir, 0o755))
	own := filepath.Join(dir, "parley") // a copy nobody may run
	b, err := os.ReadFile(bin)
	must(err)
	must(os.WriteFile(own, b, 0o755))
	data := filepath.Join(dir, "data")
	must(os.Mkdir(data, 0o755))
	asNobody := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(own, args...)
		cmd.Dir = dir
		cmd.Env = []string{"PARLEY_DATA_DIR=" + data, "PARLEY_ADDR=127.0.0.1:0", "PARLEY_SECRET_KEY=" + strings.Repeat("A", 43) + "="}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := asNobody("migrate", "up"); code != 1 || !strings.Contains(out, "to a directory this user may write") {
		t.Errorf("no database yet, its directory not writable: exit %d:\n%s\nwant exit 1 saying to set PARLEY_DATA_DIR to a directory this user may write", code, out)
	}
	if out, code := parley(t, dir, []string{"PARLEY_DATA_DIR=" + data}, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up as root: exit %d: %s", code, out)
	}
	must(os.Chmod(filepath.Join(data, "parley.db"), 0o666))
	if out, code := asNobody("migrate", "up"); code != 1 || !strings.Contains(out, "cannot be written") || !strings.Contains(out, "its directory's") {
		t.Errorf("a database all may write in a directory nobody may not: exit %d:\n%s\nwant exit 1 saying to check the file's and its directory's owner and mode", code, out)
	}
}

// TestAdminBackup: `parley admin backup PATH` copies the SQLite database
// while `parley serve` runs on it, the writes still in its -wal file
// included, to a new private file; it refuses a file that exists, a
// database that does not, and PostgreSQL.
func TestAdminBackup(t *testing.T) {
	dir := t.TempDir()
	s := serve(t, dir)
	m := printedKey.FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("first start printed no admin key:\n%s", s.stderr.String())
	}
	if code, body := post(t, s.url+"/api/v1/projects", m[1], map[string]any{"name": "kept"}); code != 201 {
		t.Fatalf("create project = %d %v", code, body)
	}
	copyPath := filepath.Join(dir, "backup.db")
	if out, code := parley(t, dir, nil, "admin", "backup", copyPath); code != 0 || !strings.Contains(out, "copied the database to "+copyPath) {
		t.Fatalf("admin backup = %d %s", code, out)
	}
	// A misspelt PARLEY_DATA_DIR, which leaves the default's database to
	// be copied, is warned of, as migrate and the other admin commands do.
	if out, code := parley(t, dir, []string{"PARLEY_DATA_DIRR=/elsewhere"}, "admin", "backup", filepath.Join(dir, "typo.db")); code != 0 ||
		!strings.Contains(out, "PARLEY_DATA_DIRR is not a Parley setting and is ignored; did you mean PARLEY_DATA_DIR?") {
		t.Errorf("admin backup with PARLEY_DATA_DIRR set = %d %s, want a warning naming PARLEY_DATA_DIR", code, out)
	}
	// A relative path is the working directory's, even one SQLite would
	// read as a URI ("file:…").
	if out, code := parley(t, dir, nil, "admin", "backup", "file:uri.db"); code != 0 {
		t.Fatalf("admin backup file:uri.db = %d %s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "file:uri.db")); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin backup file:uri.db wrote %v (%v), want a copy of mode 0600 at ./file:uri.db", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "uri.db")); err == nil {
		t.Error("admin backup file:uri.db wrote uri.db, reading its path as a URI")
	}
	s.stop(t)
	fi, err := os.Stat(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode = %v, want 0600", fi.Mode().Perm())
	}
	st, err := store.Open(context.Background(), copyPath)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := st.DB().Raw("SELECT count(*) FROM projects WHERE name = 'kept'").Row().Scan(&n); err != nil || n != 1 {
		t.Errorf("the backup holds %d projects named kept (%v), want 1", n, err)
	}
	st.Close()

	for _, tt := range []struct {
		name string
		env  []string
		path string
		want string
	}{
		{"a file that exists", nil, copyPath, "a new file"},
		{"no database", []string{"PARLEY_DATA_DIR=" + filepath.Join(dir, "elsewhere")}, filepath.Join(dir, "b2.db"), "no database to copy"},
		{"PostgreSQL", []string{"PARLEY_DATABASE_URL=postgres://127.0.0.1:1/x", "PARLEY_SECRET_KEY=" + secret.GenerateKey()}, filepath.Join(dir, "b3.db"), "pg_dump"},
	} {
		if out, code := parley(t, dir, tt.env, "admin", "backup", tt.path); code != 1 || !strings.Contains(out, tt.want) {
			t.Errorf("admin backup of %s = %d %s, want 1 saying %q", tt.name, code, out, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "elsewhere")); err == nil {
		t.Error("a backup of no database created the data directory")
	}
}
