package security

import "context"

// IdentityFrom returns the identity the middleware attached to a request's
// context, for the tests that check who a request was taken for.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
