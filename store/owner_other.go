//go:build !unix

package store

// createLock creates the lock file at path when it does not exist; where
// files have no Unix owner there is none to give it.
func createLock(path, like string) error { return createPrivate(path) }
