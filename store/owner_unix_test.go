//go:build unix

package store_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/parleyhq/parley/store"
)

// TestMigrationLockOwnerAndPath: the SQLite migration lock belongs to the
// database's owner, though root made it (`parley migrate up` by hand
// before the service starts as its own user, which could not open a lock
// of root's, and so not start), and is named after the database's real
// path, so that a process reaching it through a symbolic link waits on
// the same lock rather than migrating beside the other.
func TestMigrationLockOwnerAndPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	migrateUp := func(dsn string) {
		t.Helper()
		s, err := store.Open(ctx(), dsn)
		must(t, err)
		defer s.Close()
		must(t, s.Migrate(ctx(), "up", nil))
	}
	migrateUp(path)

	link := filepath.Join(dir, "link.db")
	must(t, os.Symlink(path, link))
	must(t, os.Remove(path+"-migrate.lock"))
	migrateUp(link)
	if _, err := os.Stat(link + "-migrate.lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("migrating through a link made a lock of the link's (%v); want the database's", err)
	}
	if _, err := os.Stat(path + "-migrate.lock"); err != nil {
		t.Errorf("migrating through a link: the database's lock: %v", err)
	}

	if os.Geteuid() != 0 {
		t.Skip("the lock's owner: only root makes a file another user owns")
	}
	const nobody = 65534
	must(t, os.Remove(path+"-migrate.lock"))
	must(t, os.Chown(path, nobody, nobody))
	migrateUp(path)
	fi, err := os.Stat(path + "-migrate.lock")
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("the lock root made for a database of uid %d: uid %d, gid %d, mode %v; want the database's owner, 0600", nobody, st.Uid, st.Gid, fi.Mode().Perm())
	}

	// A link the database's owner put in the lock's place makes root give
	// nothing away: the migration is refused, the file it names untouched.
	victim := filepath.Join(dir, "victim")
	must(t, os.WriteFile(victim, []byte("root's"), 0o600))
	must(t, os.Remove(path+"-migrate.lock"))
	must(t, os.Symlink(victim, path+"-migrate.lock"))
	s, err := store.Open(ctx(), path)
	must(t, err)
	defer s.Close()
	if err := s.Migrate(ctx(), "up", nil); err == nil {
		t.Error("migrate up with a link in the lock's place: no error")
	}
	fi, err = os.Stat(victim)
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the file a link in the lock's place names was given uid %d, gid %d", st.Uid, st.Gid)
	}
}
