package agent

import (
	"time"

	"github.com/vitals-dev/vitals/internal/hub"
)

// Event is one lifecycle transition of one plugin.
type Event struct {
	Plugin   string        `json:"plugin"`
	Step     string        `json:"step"` // initialize, start, stop, reload, enable, disable
	From     State         `json:"from"`
	To       State         `json:"to"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Time     time.Time     `json:"time"`
}

// Events fans lifecycle events out to subscribers. The host puts one in
// every container as ServiceEvents; the message bus plugin publishes what it
// receives on lifecycle.<plugin>.
//
// Handlers run synchronously on the goroutine that made the transition, one
// event at a time and in the order they subscribed, so they must be quick
// and must not call back into the lifecycle manager; hand slow work to a
// goroutine of your own.
type Events struct{ h hub.Hub[Event] }

// NewEvents returns an empty hub.
func NewEvents() *Events { return &Events{} }

// Subscribe registers fn for every later event and returns a function that
// unsubscribes it. Unsubscribing twice is harmless.
func (e *Events) Subscribe(fn func(Event)) (unsubscribe func()) { return e.h.Subscribe(fn) }

// Emit delivers ev to every subscriber.
func (e *Events) Emit(ev Event) { e.h.Emit(ev) }
