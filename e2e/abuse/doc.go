// Package abuse is the flood suite: it builds the vitals binary, starts it
// on loopback ports with a config close to the demo's, and runs one flood
// at a time against a fresh agent for a bounded time (ABUSE_DURATION,
// default 10s): an endless multipart bus message, a flood of bus
// subscription prefixes, stalled bus subscribers under a publisher flood,
// a flood of plugin announcements, and idle and half-sent HTTP
// connections. During each it samples the agent's VmRSS (and reads VmHWM)
// from /proc/<pid>/status and times GET /livez on a new connection every
// 20 ms, then reports peak RSS against the idle agent's and the p50/p99
// latency.
//
// The goal is RSS under 2x idle and /livez p99 under 50 ms during every
// flood. The suite reports; with ABUSE_STRICT=1 a missed goal fails it.
//
//	scripts/abuse                     # or: go test -tags abuse -count=1 -v ./e2e/abuse/
//	ABUSE_DURATION=30s scripts/abuse
package abuse
