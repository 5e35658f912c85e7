// Package hub fans events out to subscribers, in process: the agent's
// lifecycle events and the AI catalog's changes both go through it. It is
// the only in-process pub/sub in the tree; the message bus (bus/) is the
// one between processes.
package hub
