package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// databaseAccepts says what PARLEY_DATABASE_URL takes, for its errors.
const databaseAccepts = "it takes a postgres:// or postgresql:// URL (PostgreSQL), " +
	"or sqlite:PATH or the path of a file (SQLite); unset, SQLite in PARLEY_DATA_DIR"

var (
	// urlScheme is the scheme of a URL (RFC 3986, section 3.1). One letter
	// is a Windows drive ("C:\data\parley.db"), not a scheme.
	urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]+):`)
	// keywordValue starts a libpq keyword/value connection string
	// ("host=db user=parley password=…").
	keywordValue = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\s*=`)
)

// databaseURL checks PARLEY_DATABASE_URL and returns it as the store takes
// it: "" (SQLite in PARLEY_DATA_DIR); a postgres:// or postgresql:// URL,
// its scheme in any case (written lower case for the driver); sqlite:PATH
// or sqlite://PATH; or a file path. Any other scheme (mysql://, file:)
// and a keyword/value connection string are refused rather than taken as
// the name of a SQLite file. Its errors never quote the value, which may
// hold a password: only its scheme.
func databaseURL(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if keywordValue.MatchString(v) {
		return "", fmt.Errorf("PARLEY_DATABASE_URL looks like a key=value connection string, which Parley does not take: "+
			"write it as postgres://USER:PASSWORD@HOST:PORT/DBNAME; %s", databaseAccepts)
	}
	m := urlScheme.FindStringSubmatch(v)
	if m == nil {
		return v, nil // a file path, or ":memory:"
	}
	scheme, rest := strings.ToLower(m[1]), v[len(m[0]):]
	switch scheme {
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return "", fmt.Errorf("PARLEY_DATABASE_URL has the scheme %q but not the // after it; %s", m[1]+":", databaseAccepts)
		}
		// The driver, as libpq, ends the user and password at the first @
		// before the path: of a password with an unencoded @ it would take
		// the rest for the host, and name it in every connection error.
		if authority, _, _ := strings.Cut(rest[2:], "/"); strings.Count(authority, "@") > 1 {
			return "", errors.New("PARLEY_DATABASE_URL has more than one @ before its path: " +
				"write an @ in the user name or password (or a parameter) as %40, as in postgres://USER:PASSWORD@HOST:PORT/DBNAME")
		}
		return scheme + ":" + rest, nil
	case "sqlite":
		if strings.TrimPrefix(rest, "//") == "" {
			// sqlite:$UNSET would put the database in ./data, away from
			// a PARLEY_DATA_DIR's master key.
			return "", errors.New("PARLEY_DATABASE_URL is sqlite: with no file after it: name the file (sqlite:/var/lib/parley/parley.db), or leave PARLEY_DATABASE_URL unset for PARLEY_DATA_DIR's parley.db")
		}
		return scheme + ":" + rest, nil
	}
	return "", fmt.Errorf("PARLEY_DATABASE_URL has the scheme %q, which Parley does not take; %s "+
		"(write ./ before a relative path whose first name has a colon)", m[1]+":", databaseAccepts)
}
