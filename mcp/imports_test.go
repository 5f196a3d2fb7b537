package mcp

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyDomain keeps the package graph true: mcp reaches Parley
// only through domain, never rest, store, llm or policy.
func TestImportsOnlyDomain(t *testing.T) {
	files, err := filepath.Glob("*.go")
	must(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		must(t, err)
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/parleyhq/parley/") && path != "github.com/parleyhq/parley/domain" {
				t.Errorf("%s imports %s; mcp may import only domain of Parley's packages", f, path)
			}
		}
	}
}
