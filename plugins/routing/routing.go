package routing

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Name is the plugin's name in config and in the registry.
const Name = "routing"

// Version of the plugin.
const Version = "0.1.0"

// Errors of Request, compared with errors.Is.
var (
	ErrTimeout     = errors.New("routing: no reply before the timeout")
	ErrTooBusy     = errors.New("routing: too many requests pending")
	ErrClosed      = errors.New("routing: closed")
	ErrDestination = errors.New("routing: bad destination")
)

// Plugin is the routing plugin.
type Plugin struct {
	agent.Base

	mu     sync.Mutex
	cfg    Config
	host   agent.Host
	m      *metrics
	router *Router
}

type metrics struct {
	requests  *prometheus.CounterVec // outcome
	late      prometheus.Counter
	unmatched prometheus.Counter
	pending   prometheus.GaugeFunc
	duration  prometheus.Histogram
}

// Factory builds the plugin from its section.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg, err := decode(s)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// New returns the plugin with a validated config.
func New(cfg Config) *Plugin {
	return &Plugin{
		Base: agent.NewBase(agent.Metadata{
			Name:         Name,
			Version:      Version,
			Description:  "Request/reply over the bus with correlation ids, reply-to topics, timeouts and late-reply accounting",
			Priority:     agent.PriorityMiddleware,
			Dependencies: []string{bus.ServiceName},
		}),
		cfg: cfg,
	}
}

// Services implements agent.ServiceProvider.
func (p *Plugin) Services() []string { return []string{bus.RoutingService} }

// Initialize gets a bus client, registers the metrics and provides the
// routing service.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host = h
	provider, err := agent.Require[bus.Provider](ctx, h, bus.ServiceName)
	if err != nil {
		return err
	}
	b, err := provider.ClientFor(h.Name(), p.cfg.topics().Uses)
	if err != nil {
		return err
	}
	r := newRouter(b, h.Name(), p.cfg)
	p.m = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_routing_requests_total",
			Help: "Bus requests made through the routing service, by outcome (ok, timeout, cancelled, busy, error).",
		}, []string{"outcome"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_routing_late_replies_total",
			Help: "Replies that arrived after their request timed out; dropped.",
		}),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_routing_unmatched_replies_total",
			Help: "Replies whose correlation id matched no request, duplicates and filtered replies included; dropped.",
		}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vitals_routing_pending_requests",
			Help: "Requests waiting for a reply.",
		}, func() float64 { return float64(r.Pending()) }),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vitals_routing_request_duration_seconds",
			Help:    "Time from request to reply, for answered requests.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
	}
	for _, o := range []string{"ok", "timeout", "cancelled", "busy", "error"} {
		p.m.requests.WithLabelValues(o)
	}
	r.m = p.m
	for _, col := range []prometheus.Collector{p.m.requests, p.m.late, p.m.unmatched, p.m.pending, p.m.duration} {
		if err := h.Metrics().Register(col); err != nil {
			_ = b.Close()
			return fmt.Errorf("routing: %w", err)
		}
	}
	if err := h.Provide(bus.RoutingService, r); err != nil {
		_ = b.Close()
		return err
	}
	p.router = r
	return nil
}

// BusTopics implements bus.TopicUser: routing publishes requests on its
// routes' topics and under default_topic (up to {name}); it starts without
// them.
func (p *Plugin) BusTopics() bus.Topics {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.topics()
}

// Start subscribes to the plugin's reply topics and makes sure the
// subscription is live at the broker (in the background; requests wait
// for it).
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.router == nil {
		return errors.New("routing: Start before Initialize")
	}
	// The subscription ends when Stop closes the client.
	ch, err := p.router.b.Subscribe(context.Background(), p.router.replyPrefix)
	if err != nil {
		return fmt.Errorf("routing: subscribe %s: %w", p.router.replyPrefix, err)
	}
	r, log := p.router, p.host.Logger()
	p.host.Go(func(context.Context) { r.receive(ch) })
	p.host.Go(func(ctx context.Context) { r.sync(ctx, log) })
	return nil
}

// Reload applies new routes and timeouts to later requests.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decode(s)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.router == nil {
		return errors.New("routing: Reload before Initialize")
	}
	p.cfg = cfg
	p.router.setConfig(cfg)
	return nil
}

// Stop fails pending requests with ErrClosed and closes the bus client,
// which ends the subscription. Safe without Start and twice.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.router != nil {
		p.router.close()
		_ = p.router.b.Close()
	}
	return nil
}

// HealthCheck adds the pending count.
func (p *Plugin) HealthCheck(ctx context.Context) agent.Health {
	h := p.Base.HealthCheck(ctx)
	p.mu.Lock()
	r := p.router
	p.mu.Unlock()
	if r != nil {
		h.Details = map[string]string{"pending": fmt.Sprint(r.Pending())}
	}
	return h
}

// Router is the routing service.
type Router struct {
	b           bus.Bus
	source      string
	replyPrefix string
	m           *metrics
	ready       chan struct{}
	readyOnce   sync.Once

	mu      sync.Mutex
	cfg     Config
	pending map[string]chan bus.Message
	expired map[string]struct{}
	order   []string // expired ids, oldest first
	closed  bool
}

func newRouter(b bus.Bus, source string, cfg Config) *Router {
	return &Router{
		b: b, source: source, replyPrefix: bus.ReplyPrefix + source + ".", cfg: cfg,
		ready: make(chan struct{}), pending: map[string]chan bus.Message{}, expired: map[string]struct{}{},
	}
}

func (r *Router) setConfig(cfg Config) {
	r.mu.Lock()
	r.cfg = cfg
	r.mu.Unlock()
}

// syncer is implemented by bus clients that can confirm their
// subscriptions are live (bus.View).
type syncer interface {
	Sync(ctx context.Context) error
}

func (r *Router) sync(ctx context.Context, log *slog.Logger) {
	defer r.readyOnce.Do(func() { close(r.ready) })
	s, ok := r.b.(syncer)
	if !ok {
		return
	}
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.Sync(sctx)
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() == nil {
			log.Warn("routing: reply subscription not confirmed yet", "err", err)
		}
	}
}

// Pending returns how many requests wait for a reply.
func (r *Router) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Resolve returns the topic and timeout for a destination.
func (r *Router) Resolve(dest string) (topic string, timeout time.Duration, err error) {
	r.mu.Lock()
	cfg := r.cfg
	r.mu.Unlock()
	timeout = cfg.DefaultTimeout.D()
	if rt, ok := cfg.Routes[dest]; ok {
		if rt.Timeout > 0 {
			timeout = rt.Timeout.D()
		}
		return rt.Topic, timeout, nil
	}
	topic = strings.ReplaceAll(cfg.DefaultTopic, "{name}", dest)
	if dest == "" || strings.Contains(dest, ".") || bus.ValidTopic(topic) != nil {
		return "", 0, fmt.Errorf("%w %q: not a configured route, and not a name that makes a topic", ErrDestination, dest)
	}
	return topic, timeout, nil
}

func newID() string {
	b := make([]byte, 12)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

func (r *Router) count(outcome string) {
	if r.m != nil {
		r.m.requests.WithLabelValues(outcome).Inc()
	}
}

// Request implements bus.Requester: it returns ErrTimeout when no reply
// comes before the route's timeout.
func (r *Router) Request(ctx context.Context, dest string, msg bus.Message) (bus.Message, error) {
	topic, timeout, err := r.Resolve(dest)
	if err != nil {
		r.count("error")
		return bus.Message{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-r.ready:
	case <-ctx.Done():
		return bus.Message{}, r.giveUp(ctx, "")
	}
	id := newID()
	ch := make(chan bus.Message, 1)
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		r.count("error")
		return bus.Message{}, ErrClosed
	case len(r.pending) >= r.cfg.MaxPending:
		r.mu.Unlock()
		r.count("busy")
		return bus.Message{}, fmt.Errorf("%w (%d)", ErrTooBusy, r.cfg.MaxPending)
	}
	r.pending[id] = ch
	r.mu.Unlock()

	msg.ID, msg.CorrelationID, msg.ReplyTo = id, "", r.replyPrefix+id
	start := time.Now()
	if err := r.b.Publish(ctx, topic, msg); err != nil {
		r.forget(id, false)
		r.count("error")
		return bus.Message{}, fmt.Errorf("routing: request to %s on %s: %w", dest, topic, err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			r.count("error")
			return bus.Message{}, ErrClosed
		}
		r.count("ok")
		if r.m != nil {
			r.m.duration.Observe(time.Since(start).Seconds())
		}
		return resp, nil
	case <-ctx.Done():
		return bus.Message{}, r.giveUp(ctx, id)
	}
}

// giveUp ends a request whose context is done: a deadline is a timeout
// (its id is remembered so a late reply is counted), a cancellation is
// the caller's.
func (r *Router) giveUp(ctx context.Context, id string) error {
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	if id != "" {
		r.forget(id, true)
	}
	if timedOut {
		r.count("timeout")
		return ErrTimeout
	}
	r.count("cancelled")
	return ctx.Err()
}

// forget drops a pending request; remember keeps its id for late replies.
func (r *Router) forget(id string, remember bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, id)
	if !remember || r.cfg.LateReplyMemory == 0 {
		return
	}
	r.expired[id] = struct{}{}
	r.order = append(r.order, id)
	for len(r.order) > r.cfg.LateReplyMemory {
		delete(r.expired, r.order[0])
		r.order = r.order[1:]
	}
}

// receive matches replies to pending requests until the subscription ends.
func (r *Router) receive(ch <-chan bus.Message) {
	for m := range ch {
		id := m.CorrelationID
		if id == "" {
			id = strings.TrimPrefix(m.Topic, r.replyPrefix)
		}
		r.mu.Lock()
		c, ok := r.pending[id]
		if ok {
			delete(r.pending, id)
		}
		_, late := r.expired[id]
		if late {
			delete(r.expired, id) // count a late id once; more are duplicates
		}
		r.mu.Unlock()
		switch {
		case ok:
			c <- m // buffered, one reply per request
		case late:
			if r.m != nil {
				r.m.late.Inc()
			}
		default:
			r.unmatched()
		}
	}
}

func (r *Router) unmatched() {
	if r.m != nil {
		r.m.unmatched.Inc()
	}
}

// Send implements bus.Requester.
func (r *Router) Send(ctx context.Context, dest string, msg bus.Message) error {
	topic, _, err := r.Resolve(dest)
	if err != nil {
		return err
	}
	return r.b.Publish(ctx, topic, msg)
}

// close fails every pending request.
func (r *Router) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	for id, c := range r.pending {
		close(c)
		delete(r.pending, id)
	}
	r.readyOnce.Do(func() { close(r.ready) })
}

var (
	_ agent.Plugin          = (*Plugin)(nil)
	_ agent.ServiceProvider = (*Plugin)(nil)
	_ agent.Reloader        = (*Plugin)(nil)
	_ agent.HealthChecker   = (*Plugin)(nil)
	_ bus.Requester         = (*Router)(nil)
)
