// Package backoff computes the waits between retries, for every retry loop
// of the agent (detection rounds, bus reconnects, the broker's accept
// loop): exponential and capped, with optional jitter. It is the only
// backoff in the tree.
package backoff
