package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSealOpenAndRotate(t *testing.T) {
	oldKey, _ := ParseKey(GenerateKey())
	newKey, _ := ParseKey(GenerateKey())
	old, err := NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, id, err := old.Seal([]byte("sk-test-1234"), []byte("aip_a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("sk-test")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	rotated, err := NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := rotated.Open(ct, id, []byte("aip_a"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(pt), "sk-test-1234"; got != want {
		t.Fatalf("Open = %q, want %q", got, want)
	}
	_, newID, _ := rotated.Seal(pt, []byte("aip_a"))
	if newID == id {
		t.Fatal("rotated keyring sealed with the old key")
	}
	if _, err := old.Open(ct[:len(ct)-1], id, []byte("aip_a")); err == nil {
		t.Fatal("tampered ciphertext opened")
	}
	if _, err := old.Open(ct, newID, []byte("aip_a")); err == nil {
		t.Fatal("unknown key id opened")
	}
}

// TestOpenNeedsTheSealingsAssociatedData: a ciphertext opens only with the
// associated data it was sealed with, so one sealed for provider A does
// not open as provider B's, and one sealed with none (before keys were
// bound to their provider) opens with none only.
func TestOpenNeedsTheSealingsAssociatedData(t *testing.T) {
	key, _ := ParseKey(GenerateKey())
	k, err := NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	bound, id, err := k.Seal([]byte("sk-test-1234"), []byte("aip_a"))
	if err != nil {
		t.Fatal(err)
	}
	unbound, _, err := k.Seal([]byte("sk-test-1234"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		ct    []byte
		ad    []byte
		opens bool
	}{
		{"bound, same data", bound, []byte("aip_a"), true},
		{"bound, another provider's", bound, []byte("aip_b"), false},
		{"bound, none", bound, nil, false},
		{"unbound, none", unbound, nil, true},
		{"unbound, a provider's", unbound, []byte("aip_a"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := k.Open(tt.ct, id, tt.ad)
			if got := err == nil; got != tt.opens {
				t.Fatalf("Open = %q, %v; want it to open: %v", pt, err, tt.opens)
			}
			if err != nil && strings.Contains(err.Error(), "sk-test") {
				t.Errorf("the error carries the key: %v", err)
			}
		})
	}
}

func TestLoadOrCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.key")
	k1, err := LoadOrCreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("mode = %v, want %v", got, want)
	}
	k2, err := LoadOrCreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("second load returned a different key")
	}
}

func TestParseKeyRejectsWrongLength(t *testing.T) {
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Fatal("accepted a 5-byte key")
	}
}

// TestLoadOrCreateFileConcurrently: processes starting together on a new
// data directory (parley serve beside an MCP client's parley mcp) each
// load or create the master key file: all get the one key, none fails on
// a file another is creating ("file exists", or a key of 0 bytes read
// before it was written).
func TestLoadOrCreateFileConcurrently(t *testing.T) {
	for round := range 200 {
		path := filepath.Join(t.TempDir(), "master.key")
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { keys[i], errs[i] = LoadOrCreateFile(path) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: load %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: load %d got another key than load 0", round, i)
			}
		}
	}
}
