package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenAndRotate(t *testing.T) {
	oldKey, _ := ParseKey(GenerateKey())
	newKey, _ := ParseKey(GenerateKey())
	old, err := NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, id, err := old.Seal([]byte("sk-test-1234"))
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
	pt, err := rotated.Open(ct, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(pt), "sk-test-1234"; got != want {
		t.Fatalf("Open = %q, want %q", got, want)
	}
	_, newID, _ := rotated.Seal(pt)
	if newID == id {
		t.Fatal("rotated keyring sealed with the old key")
	}
	if _, err := old.Open(ct[:len(ct)-1], id); err == nil {
		t.Fatal("tampered ciphertext opened")
	}
	if _, err := old.Open(ct, newID); err == nil {
		t.Fatal("unknown key id opened")
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
