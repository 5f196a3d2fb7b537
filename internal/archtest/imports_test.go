// Package archtest keeps the package graph of DESIGN.md true: rest, mcp →
// domain ← store, llm, policy; domain imports only the standard library.
package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/parleyhq/parley/"

// forbidden lists, per package, the module packages it must not import
// from non-test files.
var forbidden = map[string][]string{
	"rest":   {"store", "llm", "policy", "secret", "mcp", "internal/app", "migrations"},
	"mcp":    {"store", "llm", "policy", "secret", "rest", "internal/app", "migrations"},
	"store":  {"rest", "mcp", "llm", "policy"},
	"llm":    {"rest", "mcp", "store", "policy"},
	"policy": {"rest", "mcp", "store", "llm"},
}

func imports(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			out[strings.Trim(imp.Path.Value, `"`)] = filepath.Base(f)
		}
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}

func TestDomainImportsOnlyTheStandardLibrary(t *testing.T) {
	for path, file := range imports(t, "domain") {
		first, _, _ := strings.Cut(path, "/")
		if strings.Contains(first, ".") {
			t.Errorf("domain/%s imports %s; domain may import only the standard library", file, path)
		}
	}
}

func TestAdaptersImportOnlyDownward(t *testing.T) {
	for pkg, bad := range forbidden {
		got := imports(t, pkg)
		for _, b := range bad {
			if file, ok := got[module+b]; ok {
				t.Errorf("%s/%s imports %s; see the package graph in DESIGN.md §1", pkg, file, b)
			}
		}
	}
}
