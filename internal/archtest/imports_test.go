// Package archtest keeps the package graph of DESIGN.md true: rest, mcp →
// domain ← store, llm, policy; domain imports only the standard library.
package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/parleyhq/parley/"

// allowed lists, per adapter, the only module packages its non-test files
// may import: the inbound adapters reach Parley through domain alone (and
// the wire format, request ids and slow-client bounds they share), the
// outbound ones implement domain's ports.
var allowed = map[string][]string{
	"rest":       {"domain", "internal/wire", "internal/requestid", "internal/slowclient"},
	"mcp":        {"domain", "internal/wire", "internal/requestid", "internal/slowclient"},
	"store":      {"domain", "migrations"},
	"storecache": {"domain"},
	"llm":        {"domain"},
	"policy":     {"domain", "policies"},
	"ratelimit":  {"domain"},
	"secret":     {"domain"},
	"metrics":    {"domain"},
	// What rest and mcp share: none of it reaches past domain.
	"internal/wire":       {"domain"},
	"internal/requestid":  {},
	"internal/slowclient": {},
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

// TestDomainImportsOnlyTheStandardLibrary, and none of its HTTP: DESIGN.md
// puts no HTTP or MCP type in domain.
func TestDomainImportsOnlyTheStandardLibrary(t *testing.T) {
	for path, file := range imports(t, "domain") {
		first, _, _ := strings.Cut(path, "/")
		if strings.Contains(first, ".") {
			t.Errorf("domain/%s imports %s; domain may import only the standard library", file, path)
		}
		if path == "net/http" || strings.HasPrefix(path, "net/http/") {
			t.Errorf("domain/%s imports %s; HTTP belongs to the adapters (DESIGN.md §1)", file, path)
		}
	}
}

func TestAdaptersImportOnlyDownward(t *testing.T) {
	for pkg, ok := range allowed {
		for path, file := range imports(t, pkg) {
			own, isOurs := strings.CutPrefix(path, module)
			if isOurs && !slices.Contains(ok, own) {
				t.Errorf("%s/%s imports %s; %s may import only %v of Parley's packages (DESIGN.md §1)", pkg, file, own, pkg, ok)
			}
		}
	}
}
