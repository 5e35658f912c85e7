package validation

import (
	"context"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/messagebus/bus"
)

// MessageFilter is implemented by services that vet bus messages before a
// plugin acts on them: the validation plugin's bus_validator and the rate
// limiting plugin's bus_rate_limiter. An error means drop the message; the
// filter has counted it.
type MessageFilter interface {
	FilterMessage(m bus.Message) error
}

// Names of the services that bus consumers pass messages through, in the
// order a Guard applies them.
const (
	ValidatorService   = "bus_validator"
	RateLimiterService = "bus_rate_limiter"
)

// Guard passes messages through the bus filters of whichever of those
// plugins are running, looked up per message, so a consumer needs neither
// plugin and follows them being enabled and disabled.
type Guard struct {
	c *agent.Container
}

// NewGuard returns a Guard that finds filters in c.
func NewGuard(c *agent.Container) *Guard { return &Guard{c: c} }

// Check returns the first filter's error, or nil when every running filter
// lets m through (or none runs).
func (g *Guard) Check(m bus.Message) error {
	if g == nil || g.c == nil {
		return nil
	}
	for _, name := range []string{ValidatorService, RateLimiterService} {
		v, err := g.c.Get(context.Background(), name)
		if err != nil {
			continue
		}
		if f, ok := v.(MessageFilter); ok {
			if err := f.FilterMessage(m); err != nil {
				return err
			}
		}
	}
	return nil
}
