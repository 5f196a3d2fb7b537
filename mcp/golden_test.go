package mcp

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// TestToolSchemasGolden compares every tool's name, description, schemas
// and annotations with testdata/tools.golden.json. UPDATE_GOLDEN=1
// rewrites the file; review the diff like code.
func TestToolSchemasGolden(t *testing.T) {
	srv := NewServer(&domain.Services{}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tools := srv.ListTools()
	names := make([]string, 0, len(tools))
	for name := range tools {
		names = append(names, name)
	}
	sort.Strings(names)
	list := make([]json.RawMessage, 0, len(names))
	for _, name := range names {
		b, err := json.Marshal(tools[name].Tool)
		if err != nil {
			t.Fatalf("marshal %s: %v", name, err)
		}
		list = append(list, b)
	}
	got, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "tools.golden.json")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skipf("wrote %s; run the test again without UPDATE_GOLDEN to compare", path)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run UPDATE_GOLDEN=1 go test ./mcp/ to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("tool schemas differ from %s; if the change is intended, run UPDATE_GOLDEN=1 go test ./mcp/ and review the diff.\ngot:\n%s", path, got)
	}
}
