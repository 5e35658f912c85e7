// Package messagebus is the message_bus plugin: the ZeroMQ broker that
// joins the agent's plugins and external plugin processes.
//
// Publishers connect to one socket (default tcp://127.0.0.1:5555) and
// subscribers to another (default tcp://127.0.0.1:5556). zmq4's XSUB/XPUB
// proxy does not forward subscriptions, so the broker is the pattern that
// works (docs/dependencies.md, go-zeromq/zmq4): the publisher side is a SUB
// endpoint subscribed to everything, and a Go loop forwards each message to
// the subscriber side, a PUB endpoint that filters by prefix. Each
// subscriber has its own bounded queue and writer, so a slow subscriber
// loses messages (vitals_bus_dropped_total) instead of slowing the broker
// or the others. Malformed messages are counted and dropped; a peer that
// sends a message past max_message_bytes is disconnected.
//
// The plugin provides the message_bus service, a bus.Provider that hands
// each plugin a client scoped to the topic prefixes its config allows, and
// publishes every plugin's lifecycle events on lifecycle.<plugin>. The
// client API lives in package bus; fakes in package bustest.
package messagebus
