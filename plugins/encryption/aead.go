package encryption

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// format is the first byte of every ciphertext.
const format = 1

// Errors of Open, compared with errors.Is.
var (
	// ErrUnknownKey is a ciphertext sealed with a key the ring lacks.
	ErrUnknownKey = errors.New("encryption: unknown key id")
	// ErrMalformed is a ciphertext too short or of an unknown format.
	ErrMalformed = errors.New("encryption: malformed ciphertext")
	// ErrAuth is a ciphertext that fails authentication: tampered, or
	// opened with the wrong additional data.
	ErrAuth = errors.New("encryption: message authentication failed")
)

// Keyring is a set of AEAD keys and the one that seals. It is immutable;
// rotation builds a new one.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
}

// NewKeyring builds a ring from key ids and 32-byte keys.
func NewKeyring(active string, keys map[string][]byte) (*Keyring, error) {
	r := &Keyring{active: active, aeads: map[string]cipher.AEAD{}}
	for id, k := range keys {
		if len(id) == 0 || len(id) > 255 {
			return nil, fmt.Errorf("encryption: key id %q: want 1..255 bytes", id)
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("encryption: key %q: want %d bytes, got %d", id, KeySize, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		r.aeads[id] = a
	}
	if _, ok := r.aeads[active]; !ok {
		return nil, fmt.Errorf("encryption: active key %q not in ring", active)
	}
	return r, nil
}

// Active returns the id of the sealing key.
func (r *Keyring) Active() string { return r.active }

// header is format | len(id) | id; it is authenticated with aad.
func header(id string) []byte {
	h := make([]byte, 0, 2+len(id))
	return append(append(h, format, byte(len(id))), id...)
}

func fullAAD(h, aad []byte) []byte {
	return append(append(make([]byte, 0, len(h)+len(aad)), h...), aad...)
}

// Seal encrypts plaintext with the active key:
// format(1) | idlen(1) | id | nonce(12) | ciphertext and tag.
func (r *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	a := r.aeads[r.active]
	h := header(r.active)
	out := make([]byte, len(h)+a.NonceSize(), len(h)+a.NonceSize()+len(plaintext)+a.Overhead())
	copy(out, h)
	nonce := out[len(h):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encryption: nonce: %w", err)
	}
	return a.Seal(out, nonce, plaintext, fullAAD(h, aad)), nil
}

// Open decrypts what Seal produced, with whichever key of the ring sealed
// it.
func (r *Keyring) Open(ciphertext, aad []byte) ([]byte, error) {
	id, err := KeyID(ciphertext)
	if err != nil {
		return nil, err
	}
	a, ok := r.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	hl := 2 + len(id)
	if len(ciphertext) < hl+a.NonceSize()+a.Overhead() {
		return nil, ErrMalformed
	}
	nonce := ciphertext[hl : hl+a.NonceSize()]
	out, err := a.Open(nil, nonce, ciphertext[hl+a.NonceSize():], fullAAD(ciphertext[:hl], aad))
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// KeyID returns the id of the key that sealed ciphertext.
func KeyID(ciphertext []byte) (string, error) {
	if len(ciphertext) < 2 || ciphertext[0] != format || len(ciphertext) < 2+int(ciphertext[1]) || ciphertext[1] == 0 {
		return "", ErrMalformed
	}
	return string(ciphertext[2 : 2+int(ciphertext[1])]), nil
}
