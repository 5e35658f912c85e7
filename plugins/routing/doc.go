// Package routing is the routing plugin (priority middleware, depends on
// message_bus): request/reply over the bus for the agent's plugins. It
// provides bus.RoutingService ("routing"), a *Router implementing
// bus.Requester: it sends a request to a named destination (a configured
// route, or a topic made from the name), gives it a correlation id and a
// private reply-to topic, waits for the matching reply with a per-request
// timeout, and counts and drops replies that come after their request gave
// up. The ExtManager's health requests to bus plugins go through it:
//
//	r, err := agent.Require[bus.Requester](ctx, h, bus.RoutingService)
//	resp, err := r.Request(ctx, "gpu_probe", req) // health.request.gpu_probe
package routing
