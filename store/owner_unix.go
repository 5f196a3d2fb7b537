//go:build unix

package store

import (
	"os"
	"syscall"
)

// sameOwner gives path the owner and group of like when this process runs
// as root and they differ: a file root made beside a database (`parley
// migrate up` run by hand before the service starts as its own user)
// would be root's, private, and the service could not open it.
func sameOwner(path, like string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	want, err := os.Stat(like)
	if err != nil {
		return err
	}
	got, err := os.Stat(path)
	if err != nil {
		return err
	}
	w, ok1 := want.Sys().(*syscall.Stat_t)
	g, ok2 := got.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || (w.Uid == g.Uid && w.Gid == g.Gid) {
		return nil
	}
	return os.Chown(path, int(w.Uid), int(w.Gid))
}
