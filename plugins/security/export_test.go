package security

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// IdentityFrom returns the identity the middleware attached to a request's
// context, for the tests that check who a request was taken for.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// HashToken returns the hex SHA-256 of a token, the form config's sha256
// key takes.
func HashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}
