//go:build unix

package store

import (
	"fmt"
	"os"
	"syscall"
)

// createLock creates the lock file at path when it does not exist, mode
// 0600, and, when this process runs as root, gives it the owner and group
// of like, the database: a lock root made (`parley migrate up` run by hand
// before the service starts as its own user) would be root's, private,
// and the service could not open it. It never follows a symbolic link
// and changes the owner through the open file only, so that a link put
// in the lock's place cannot make root give away the file it points to;
// anything but a regular file there is refused. A refused change of owner
// (a user namespace, NFS's root squashing) leaves the lock as it is.
func createLock(path, like string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v); remove it", path, fi.Mode().Type())
	}
	if os.Geteuid() != 0 {
		return nil
	}
	db, err := os.Stat(like)
	if err != nil {
		return nil
	}
	want, ok1 := db.Sys().(*syscall.Stat_t)
	got, ok2 := fi.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && (want.Uid != got.Uid || want.Gid != got.Gid) {
		_ = f.Chown(int(want.Uid), int(want.Gid))
	}
	return nil
}
