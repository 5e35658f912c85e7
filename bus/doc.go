// Package bus is the client side of the Vitals message bus: the Bus
// interface that plugins program against, a ZeroMQ client that implements
// it, topic rules, per-plugin permission scopes, OpenTelemetry propagation
// through the envelope and the bus metrics.
//
// It is a library below every plugin in the map of docs/architecture.md:
// the broker plugin (plugins/messagebus), every plugin that talks on the
// bus and any external Go program import it; it imports no plugin. It
// also names the bus services and their Go interfaces, once: the
// message_bus service (ServiceName, a Provider), the broker's filters
// (ValidatorService, RateLimiterService, a Filter) and request/reply to
// named destinations (RoutingService, a Requester):
//
//	p, err := agent.Require[bus.Provider](ctx, h, bus.ServiceName)
//	b, err := p.ClientFor(h.Name()) // scoped to what config allows
//	err = b.Publish(ctx, "logs.info.myplugin", bus.Message{Payload: data})
//	ch, err := b.Subscribe(ctx, "myplugin.")
//
// A message on the wire is two frames: the topic and a protobuf Envelope
// (proto/vitals/bus/v1). Delivery is at most once: queues are bounded and a
// full queue drops, counted in vitals_bus_dropped_total, rather than block a
// publisher, the broker or another subscriber.
package bus
