package validation

import "github.com/vitals-dev/vitals/plugins/messagebus/bus"

// MessageFilter is the interface of the bus_validator service; the broker
// applies it to every message before any plugin sees it.
type MessageFilter = bus.Filter

// Names of the bus filter services.
const (
	ValidatorService   = bus.ValidatorService
	RateLimiterService = bus.RateLimiterService
)
