package bus

import "context"

// RoutingService is the name of the container service that the routing
// plugin provides; its value implements Requester. Plugins that ask other
// plugins over the bus look it up by this name and fall back to Client.Request
// on a topic when it is not running.
const RoutingService = "routing"

// Requester is request/reply to named destinations: a configured route, or
// a topic made from the name. It is what the routing service offers.
type Requester interface {
	// Request sends msg to the named destination and returns the reply
	// whose correlation id is the request's id, or an error after the
	// route's timeout (or ctx's deadline, if sooner).
	Request(ctx context.Context, dest string, msg Message) (Message, error)
	// Send publishes msg to the named destination without waiting.
	Send(ctx context.Context, dest string, msg Message) error
}
