package bus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bus metrics, shared by the broker and the clients of one
// process. A nil *Metrics records nothing. Labels are bounded: topic
// families (Family), fixed reasons, socket kinds and plugin names.
type Metrics struct {
	Messages  *prometheus.CounterVec // direction, family
	Bytes     *prometheus.CounterVec // direction, family
	Dropped   *prometheus.CounterVec // reason
	Malformed *prometheus.CounterVec // reason
	Denied    *prometheus.CounterVec // plugin, operation
	Reconnect *prometheus.CounterVec // socket
	AuthFail  prometheus.Counter
	Latency   *prometheus.HistogramVec // family
	Conns     *prometheus.GaugeVec     // socket
	// Disconnects counts connections the broker closed for breaking a
	// bound; Refused, connections and subscriptions it turned away.
	Disconnects  *prometheus.CounterVec // reason
	Refused      *prometheus.CounterVec // reason
	AcceptErrors prometheus.Counter
	Throttled    *prometheus.CounterVec // reason

	registered []prometheus.Collector
}

// Drop reasons.
const (
	DropPublishQueueFull      = "publish_queue_full"
	DropSubscriberQueueFull   = "subscriber_queue_full"
	DropSubscriptionQueueFull = "subscription_queue_full"
	DropDisconnected          = "disconnected"
	DropEventQueueFull        = "event_queue_full"
	// DropSubscriberQueueBytes: the subscriber's queue held
	// subscriber_queue_bytes; DropQueueBytes: all subscribers' queues
	// together held queue_bytes.
	DropSubscriberQueueBytes = "subscriber_queue_bytes"
	DropQueueBytes           = "queue_bytes"
)

// Disconnect reasons.
const (
	DisconnectOversized = "oversized"  // a frame or message past max_message_bytes
	DisconnectIdle      = "idle"       // nothing read or written for idle_timeout
	DisconnectStalled   = "stalled"    // a write blocked for write_timeout
	DisconnectReadBytes = "read_bytes" // no room in read_bytes for read_wait
	// DisconnectMessageTimeout: a message not read whole within
	// message_timeout of its first header.
	DisconnectMessageTimeout = "message_timeout"
)

// Throttle reasons: the connection's rate that made the broker wait
// before it read on.
const (
	ThrottlePublishRate      = "publish_rate"
	ThrottlePublishBytesRate = "publish_bytes_rate"
	ThrottleSubscribeRate    = "subscribe_rate"
	// ThrottleConnectionLimit counts the times the broker stopped
	// accepting because max_connections were open.
	ThrottleConnectionLimit = "connection_limit"
)

// Refusal reasons.
const (
	RefusedSubscriptionLimit = "subscription_limit" // past max_subscriptions of one subscriber
)

// Malformed reasons.
const (
	MalformedFrames   = "frames"
	MalformedTopic    = "topic"
	MalformedEnvelope = "envelope"
	MalformedOversize = "oversized"
)

// Every reason, socket and direction a bounded label can take, so that the
// series exist at 0 from the start: a dashboard shows 0, not "No data",
// and rate() has a start to count from.
var (
	dropReasons       = []string{DropPublishQueueFull, DropSubscriberQueueFull, DropSubscriptionQueueFull, DropDisconnected, DropEventQueueFull, DropSubscriberQueueBytes, DropQueueBytes, DropFiltered}
	malformedReasons  = []string{MalformedFrames, MalformedTopic, MalformedEnvelope, MalformedOversize}
	disconnectReasons = []string{DisconnectOversized, DisconnectIdle, DisconnectStalled, DisconnectReadBytes, DisconnectMessageTimeout}
	refusedReasons    = []string{RefusedSubscriptionLimit}
	throttleReasons   = []string{ThrottlePublishRate, ThrottlePublishBytesRate, ThrottleSubscribeRate, ThrottleConnectionLimit}
	sockets           = []string{"pub", "sub"}
	operations        = []string{"publish", "subscribe"}
)

// NewMetrics creates the collectors, unregistered, with every series of a
// fixed label set at 0 (denials per plugin: see Known).
func NewMetrics() *Metrics {
	m := newMetrics()
	for _, r := range dropReasons {
		m.Dropped.WithLabelValues(r)
	}
	for _, r := range malformedReasons {
		m.Malformed.WithLabelValues(r)
	}
	for _, r := range disconnectReasons {
		m.Disconnects.WithLabelValues(r)
	}
	for _, r := range refusedReasons {
		m.Refused.WithLabelValues(r)
	}
	for _, r := range throttleReasons {
		m.Throttled.WithLabelValues(r)
	}
	for _, s := range sockets {
		m.Reconnect.WithLabelValues(s)
	}
	return m
}

// Known creates the denial series of a plugin or bus user at 0, for each
// operation; the broker calls it for every client it scopes and every
// PLAIN user it knows.
func (m *Metrics) Known(plugin string) {
	if m == nil {
		return
	}
	for _, op := range operations {
		m.Denied.WithLabelValues(plugin, op)
	}
}

func newMetrics() *Metrics {
	return &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_messages_total",
			Help: "Messages through the broker, by direction (in from publishers, out to subscribers) and topic family.",
		}, []string{"direction", "family"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_bytes_total",
			Help: "Bytes of topic and envelope through the broker, by direction and topic family.",
		}, []string{"direction", "family"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_dropped_total",
			Help: "Messages dropped because a bounded queue was full or a peer was gone, by reason.",
		}, []string{"reason"}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_malformed_total",
			Help: "Messages dropped as malformed, by reason (frames, topic, envelope, oversized).",
		}, []string{"reason"}),
		Denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_denied_total",
			Help: "Publish and subscribe operations refused by topic permissions, by plugin and operation.",
		}, []string{"plugin", "operation"}),
		Reconnect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_reconnects_total",
			Help: "Client reconnections to the broker, by socket (pub, sub).",
		}, []string{"socket"}),
		AuthFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_bus_auth_failures_total",
			Help: "Connections refused by the broker's PLAIN authentication.",
		}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitals_bus_delivery_latency_seconds",
			Help:    "Time from publish to delivery to a subscriber in this process, by topic family.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"family"}),
		Conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_bus_connections",
			Help: "Connections open at the broker, by socket (pub: publishers, sub: subscribers).",
		}, []string{"socket"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_disconnects_total",
			Help: "Connections the broker closed because the peer broke a bound, by reason (oversized, idle, stalled, read_bytes, message_timeout).",
		}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_refused_total",
			Help: "Subscriptions the broker refused at a bound, by reason (subscription_limit).",
		}, []string{"reason"}),
		Throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_bus_throttled_total",
			Help: "Messages the broker read late because their connection was over its rate (publish_rate, publish_bytes_rate, subscribe_rate), and times it stopped accepting at max_connections (connection_limit); the peer waits, nothing is dropped.",
		}, []string{"reason"}),
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_bus_accept_errors_total",
			Help: "Errors accepting connections on the broker's sockets (such as too many open files); the broker backs off after each.",
		}),
	}
}

// Register registers the collectors with reg. A collector that is already
// registered (a plugin started again in the same process) is replaced by
// the registered one, so counts continue. Unregister undoes it.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	if m == nil || reg == nil {
		return nil
	}
	var errs []error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				m.registered = append(m.registered, are.ExistingCollector)
				return are.ExistingCollector
			}
			errs = append(errs, err)
			return c
		}
		m.registered = append(m.registered, c)
		return c
	}
	adopt(reg1, &m.Messages)
	adopt(reg1, &m.Bytes)
	adopt(reg1, &m.Dropped)
	adopt(reg1, &m.Malformed)
	adopt(reg1, &m.Denied)
	adopt(reg1, &m.Reconnect)
	adopt(reg1, &m.AuthFail)
	adopt(reg1, &m.Latency)
	adopt(reg1, &m.Conns)
	adopt(reg1, &m.Disconnects)
	adopt(reg1, &m.Refused)
	adopt(reg1, &m.Throttled)
	adopt(reg1, &m.AcceptErrors)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus metrics: %w", err)
	}
	return nil
}

// adopt registers *c through reg and keeps what reg returns: the
// collector already registered in its place, when there is one.
func adopt[T prometheus.Collector](reg func(prometheus.Collector) prometheus.Collector, c *T) {
	if v, ok := reg(*c).(T); ok {
		*c = v
	}
}

// Unregister removes what Register registered.
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	if m == nil || reg == nil {
		return
	}
	for _, c := range m.registered {
		reg.Unregister(c)
	}
	m.registered = nil
}

func (m *Metrics) drop(reason string) {
	if m != nil {
		m.Dropped.WithLabelValues(reason).Inc()
	}
}

// Drop counts one dropped message.
func (m *Metrics) Drop(reason string) { m.drop(reason) }

// Malform counts one malformed message.
func (m *Metrics) Malform(reason string) {
	if m != nil {
		m.Malformed.WithLabelValues(reason).Inc()
	}
}

// Deny counts one refused operation.
func (m *Metrics) Deny(plugin, op string) {
	if m != nil {
		m.Denied.WithLabelValues(plugin, op).Inc()
	}
}

func (m *Metrics) reconnect(socket string) {
	if m != nil {
		m.Reconnect.WithLabelValues(socket).Inc()
	}
}

// Disconnect counts one connection closed for breaking a bound.
func (m *Metrics) Disconnect(reason string) {
	if m != nil {
		m.Disconnects.WithLabelValues(reason).Inc()
	}
}

// Refuse counts one connection or subscription refused at a bound.
func (m *Metrics) Refuse(reason string) {
	if m != nil {
		m.Refused.WithLabelValues(reason).Inc()
	}
}

// AcceptError counts one failed accept.
func (m *Metrics) AcceptError() {
	if m != nil {
		m.AcceptErrors.Inc()
	}
}

// Throttle counts one message read late for its connection's rate.
func (m *Metrics) Throttle(reason string) {
	if m != nil {
		m.Throttled.WithLabelValues(reason).Inc()
	}
}
