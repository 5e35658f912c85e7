package store

import "fmt"

// Seal returns data sealed with c, or data itself when c is nil; sealed
// reports which. Store the flag beside the record so that Unseal knows.
func Seal(c Cipher, data, aad []byte) (out []byte, sealed bool, err error) {
	if c == nil {
		return data, false, nil
	}
	out, err = c.Seal(data, aad)
	if err != nil {
		return nil, false, fmt.Errorf("store: seal: %w", err)
	}
	return out, true, nil
}

// ErrNoCipher is returned by Unseal for a sealed record when no cipher is
// configured.
var ErrNoCipher = fmt.Errorf("store: record is encrypted and no cipher is configured")

// Unseal reverses Seal.
func Unseal(c Cipher, data, aad []byte, sealed bool) ([]byte, error) {
	if !sealed {
		return data, nil
	}
	if c == nil {
		return nil, ErrNoCipher
	}
	out, err := c.Open(data, aad)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	return out, nil
}
