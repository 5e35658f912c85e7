// Package logtap is a slog.Handler that passes every record on to the
// agent's real handler and also offers it, flattened, to attached sinks.
//
// The agent binary wraps its handler in a Tap; plugins find it behind the
// logger their container gives them (Find) and attach a sink. log_consumer
// attaches one that publishes the agent's own records on logs.<level>.<source>
// so they are stored beside external plugins' logs; the security plugin
// attaches one that turns records marked audit=true (bus permission
// denials, authentication failures) into audit records. Sinks run on the
// logging goroutine and must only queue.
package logtap
