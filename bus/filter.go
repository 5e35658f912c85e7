package bus

// Filter vets a message at the broker, before any subscriber sees it. An
// error drops the message; the filter counts its own reasons, the broker
// counts the drop as DropFiltered. FilterMessage runs on the broker's
// receive path, so it must be quick and safe for concurrent use.
type Filter interface {
	FilterMessage(m Message) error
}

// Services the broker looks for and applies, in this order, while their
// plugins run: the validation plugin's and the rate limiting plugin's.
const (
	ValidatorService   = "bus_validator"
	RateLimiterService = "bus_rate_limiter"
)

// FilterServices lists the filter services in the order they apply.
var FilterServices = []string{ValidatorService, RateLimiterService}

// DropFiltered is the drop reason of a message a Filter rejected.
const DropFiltered = "filtered"
