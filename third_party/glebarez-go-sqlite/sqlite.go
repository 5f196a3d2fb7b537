// Package sqlite stands in for github.com/glebarez/go-sqlite, so that the
// GORM dialector github.com/glebarez/sqlite runs on the upstream driver,
// modernc.org/sqlite, instead of that unmaintained fork of it.
//
// The fork re-parses every statement on every call and binds parameters in
// time quadratic in their number; the upstream driver keeps prepared
// statements. Both register themselves as database/sql's "sqlite" driver,
// so they cannot be linked into one binary: Parley's go.mod replaces the
// fork with this package. The dialector uses only the Error type from it.
package sqlite

import "modernc.org/sqlite"

// Error is the upstream driver's error, which carries SQLite's extended
// result code.
type Error = sqlite.Error
