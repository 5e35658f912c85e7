// Package ratelimiting is the rate_limiting plugin (priority middleware): token
// buckets (golang.org/x/time/rate) per client on the agent's HTTP front,
// answering 429 with Retry-After, and per bus identity on bus messages,
// whose excess is dropped and counted. A client is its bearer token (hashed) or,
// without one, its address. Buckets of idle clients expire and the number
// tracked is bounded, so many clients cannot grow memory without bound.
//
// The bus side is the bus_rate_limiter service, a bus.Filter that the
// broker applies to every message; its bucket is the broker's identity of
// the publishing connection (bus.Message.Peer), never the envelope's
// claimed source. The agent's own plugins are not limited.
package ratelimiting
