// Package ratelimit is the rate_limiting plugin (priority middleware): token
// buckets (golang.org/x/time/rate) per client on the agent's HTTP front,
// answering 429 with Retry-After, and per source on bus messages, whose
// excess is dropped and counted. A client is its bearer token (hashed) or,
// without one, its address. Buckets of idle clients expire and the number
// tracked is bounded, so many clients cannot grow memory without bound.
//
// The bus side is the bus_rate_limiter service, a bus.Filter that the
// broker applies to every message; a source is the PLAIN user of an
// authenticated process, else the envelope's source. Sources that are
// running in-process plugins are not limited.
package ratelimit
