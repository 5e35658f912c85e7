// Package bus is the client side of the Vitals message bus: the Bus
// interface that plugins program against, a ZeroMQ client that implements
// it, topic rules, per-plugin permission scopes, OpenTelemetry propagation
// through the envelope and the bus metrics.
//
// It sits below plugins/messagebus (the broker plugin) in the map of
// docs/architecture.md and imports no broker internals, so any plugin, and any
// external Go program, can use it:
//
//	p, err := agent.Require[bus.Provider](ctx, c, bus.ServiceName)
//	b, err := p.ClientFor(c.Owner()) // scoped to what config allows
//	err = b.Publish(ctx, "logs.info.myplugin", bus.Message{Payload: data})
//	ch, err := b.Subscribe(ctx, "myplugin.")
//
// A message on the wire is two frames: the topic and a protobuf Envelope
// (proto/vitals/bus/v1). Delivery is at most once: queues are bounded and a
// full queue drops, counted in vitals_bus_dropped_total, rather than block a
// publisher, the broker or another subscriber.
package bus
