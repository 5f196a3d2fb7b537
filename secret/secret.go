// Package secret seals provider API keys with AES-256-GCM under a master
// key. Each ciphertext is stored with the id of the master key that sealed
// it, so a keyring holding the old and new keys can re-encrypt (rotate),
// and opens only with the associated data it was sealed with (the domain
// binds each key to its provider that way).
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/parleyhq/parley/domain"
)

// KeySize is the master key's length in bytes.
const KeySize = 32

// Keyring seals with its primary key and opens with any key it holds.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

var _ domain.Sealer = (*Keyring)(nil)

// NewKeyring returns a keyring whose first key is the primary; the others
// only open old ciphertexts.
func NewKeyring(primary []byte, older ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{primary}, older...) {
		if len(key) != KeySize {
			return nil, fmt.Errorf("secret: master key must be %d bytes, got %d", KeySize, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := KeyID(key)
		if i == 0 {
			k.primary = id
		}
		k.aeads[id] = aead
	}
	return k, nil
}

// KeyID names a master key without revealing it: the first 8 bytes of its
// SHA-256, in hex.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// Holds reports whether the keyring can open ciphertexts sealed under keyID.
func (k *Keyring) Holds(keyID string) bool {
	_, ok := k.aeads[keyID]
	return ok
}

// Seal encrypts plaintext with the primary key, authenticating ad with it
// (the associated data: Open must be given the same); the nonce is
// prepended.
func (k *Keyring) Seal(plaintext, ad []byte) ([]byte, string, error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return aead.Seal(nonce, nonce, plaintext, ad), k.primary, nil
}

// Open decrypts a ciphertext sealed under keyID with the associated data
// ad; it fails when the ciphertext, the key or ad differ from the sealing's.
func (k *Keyring) Open(ciphertext []byte, keyID string, ad []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("secret: master key %s is not loaded", keyID)
	}
	if len(ciphertext) < aead.NonceSize() {
		return nil, errors.New("secret: ciphertext too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, ciphertext[:n], ciphertext[n:], ad)
}

// GenerateKey returns a new random master key, base64-encoded.
func GenerateKey() string {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

// ParseKey decodes a base64 master key (standard or URL alphabet).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) != KeySize {
				return nil, fmt.Errorf("master key must decode to %d bytes, got %d; make one with 'parley admin gen-key'", KeySize, len(key))
			}
			return key, nil
		}
	}
	return nil, errors.New("master key is not valid base64; make one with 'parley admin gen-key'")
}

// LoadOrCreateFile reads the master key at path, creating it (mode 0600,
// parent directory 0700) with a new random key when it does not exist.
// The key is written whole to a file of its own, then linked to path, which
// fails if path exists: processes starting together on a new data
// directory all load the key the first to link wrote, never a file another
// is still writing, and none fails on it.
func LoadOrCreateFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ParseKey(string(b))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*") // mode 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	s := GenerateKey()
	_, err = f.WriteString(s + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateFile(path) // another process made it first
	} else if err != nil {
		return nil, err
	}
	return ParseKey(s)
}
