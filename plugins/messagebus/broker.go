package messagebus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Name is the plugin's name in config and in the registry.
const Name = "message_bus"

// Version of the plugin.
const Version = "0.1.0"

// Broker is the message_bus plugin.
type Broker struct {
	agent.Base
	cfg     Config
	section agent.Section // for errors about its keys

	mu      sync.Mutex
	log     *slog.Logger
	tp      trace.TracerProvider
	host    agent.Host // finds the bus filter services
	metrics *bus.Metrics
	srv     *server
	svc     *Service
}

// Factory builds a Broker from its config section; it allocates nothing.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(s); err != nil {
		return nil, err
	}
	b := New(cfg)
	b.section = s
	return b, nil
}

// CheckPeers implements agent.PeerChecker: a plugin that config gives
// permissions of its own must be allowed what it needs to start
// (bus.TopicUser); one that config leaves out gets what it uses.
func (b *Broker) CheckPeers(peers map[string]agent.Plugin) error {
	names := make([]string, 0, len(peers))
	for name := range peers {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		tu, ok := peers[name].(bus.TopicUser)
		if !ok {
			continue
		}
		perms, ok := b.cfg.Permissions[name]
		if !ok {
			continue
		}
		if lacks := perms.Lacks(name, tu.BusTopics().Needs); len(lacks) > 0 {
			errs = append(errs, b.section.Errorf("permissions."+name,
				"%s cannot start without permission to %s; add it, or remove this entry to give %s its default topics",
				name, strings.Join(lacks, " and "), name))
		}
	}
	return errors.Join(errs...)
}

// New returns a Broker with a validated config.
func New(cfg Config) *Broker {
	return &Broker{
		Base: agent.NewBase(agent.Metadata{
			Name:        Name,
			Version:     Version,
			Description: "ZeroMQ message bus broker: pub/sub between plugins and external processes",
			Priority:    agent.PriorityInfrastructure,
		}),
		cfg: cfg,
	}
}

// Services implements agent.ServiceProvider.
func (b *Broker) Services() []string { return []string{bus.ServiceName} }

// Initialize reads the host services, registers the metrics, resolves
// credentials and provides the message_bus service. It binds nothing.
func (b *Broker) Initialize(ctx context.Context, h agent.Host) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = h.Logger()
	tp := h.TracerProvider()
	if _, isNoop := tp.(noop.TracerProvider); isNoop {
		tp = nil
	}
	b.tp, b.host = tp, h

	var users map[string]userEntry
	if b.cfg.Auth != nil {
		users = map[string]userEntry{}
		for _, u := range b.cfg.Auth.Users {
			pw, err := u.password(b.section.Secrets())
			if err != nil {
				return err
			}
			perms := ExternalPermissions(u.Username)
			if u.Permissions != nil {
				perms = *u.Permissions
			}
			users[u.Username] = userEntry{password: pw, perms: &perms}
		}
	}

	b.metrics = bus.NewMetrics()
	if err := b.metrics.Register(h.Metrics()); err != nil {
		return fmt.Errorf("message bus: %w", err)
	}
	if b.cfg.Auth != nil {
		for _, u := range b.cfg.Auth.Users {
			b.metrics.Known(u.Username)
		}
	}
	b.srv = newServer(b.cfg, b.log, b.metrics, users)
	b.svc = &Service{broker: b}
	return h.Provide(bus.ServiceName, b.svc)
}

// Start binds both sockets (an address in use fails Start, naming it),
// starts forwarding and publishes lifecycle events from now on.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("message bus: Start before Initialize")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.srv.start(); err != nil {
		return err
	}
	b.log.Info("message bus listening", "publish_address", b.cfg.PublishAddress, "subscribe_address", b.cfg.SubscribeAddress, "auth", b.cfg.Auth != nil)
	b.refreshServices()
	// The host ends the subscription when the broker stops.
	b.host.SubscribeEvents(func(ev agent.Event) {
		b.refreshServices() // a filter or the audit plugin may have started or stopped
		if b.cfg.LifecycleEvents {
			b.publishEvent(ev)
		}
	})
	return nil
}

// refreshServices looks up the bus filter services and the audit recorder
// that are running now. It runs on the lifecycle goroutine: container
// lookups, no waiting.
func (b *Broker) refreshServices() {
	if b.host == nil || b.srv == nil {
		return
	}
	var fs []bus.Filter
	for _, name := range bus.FilterServices {
		v, err := b.host.Get(context.Background(), name)
		if err != nil {
			continue // not provided, or its plugin is not running
		}
		if f, ok := v.(bus.Filter); ok {
			fs = append(fs, f)
		}
	}
	b.srv.filters.Store(&fs)
	b.srv.recorder.Store(nil)
	if v, err := b.host.Get(context.Background(), audit.ServiceName); err == nil {
		if rec, ok := v.(audit.Recorder); ok {
			b.srv.recorder.Store(&rec)
		}
	}
}

// publishEvent runs on the lifecycle goroutine: it only queues.
func (b *Broker) publishEvent(ev agent.Event) {
	cl := b.svc.client()
	if cl == nil {
		return
	}
	m, err := bus.NewProto(&busv1.LifecycleEvent{
		Plugin:     ev.Plugin,
		Step:       ev.Step,
		From:       string(ev.From),
		To:         string(ev.To),
		Error:      ev.Error,
		DurationNs: int64(ev.Duration),
		Time:       timestamppb.New(ev.Time),
	})
	if err != nil {
		return
	}
	if err := cl.Publish(context.Background(), "lifecycle."+ev.Plugin, m); errors.Is(err, bus.ErrQueueFull) {
		b.log.Debug("lifecycle event dropped", "plugin", ev.Plugin, "err", err)
	}
}

// Stop ends forwarding and closes every connection and the in-agent
// client. Safe without Start and twice: each close is.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if b.svc != nil {
			b.svc.close()
		}
		if b.srv != nil {
			b.srv.close()
		}
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("message bus stop: %w", ctx.Err())
	}
	return err
}

// HealthCheck reports the lifecycle state and the connection counts.
func (b *Broker) HealthCheck(ctx context.Context) agent.Health {
	h := b.Base.HealthCheck(ctx)
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv != nil {
		h.Details = map[string]string{
			"publish_address":   b.cfg.PublishAddress,
			"subscribe_address": b.cfg.SubscribeAddress,
			"subscribers":       fmt.Sprint(len(*srv.subs.Load())),
		}
	}
	return h
}

// Metrics returns the bus metrics (nil before Initialize).
func (b *Broker) Metrics() *bus.Metrics {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.metrics
}

// Service is the value of the message_bus service.
type Service struct {
	broker *Broker

	mu     sync.Mutex
	cl     *bus.Client
	closed bool
}

// ClientFor returns a Bus for plugin, scoped to the permissions the
// broker's config gives it (default: bus.DefaultPermissions and the topics
// the plugin uses, see bus.TopicUser). Denials are
// counted in vitals_bus_denied_total and written as audit log lines. The
// agent's plugins share one connection pair, made on first use: an
// in-process socket pair, not the broker's listening sockets, so the
// broker knows their messages as the agent's (bus.PeerAgent) and no other
// process can pass for them. It connects in the background, so ClientFor
// may be called in Initialize, before the broker has started.
func (s *Service) ClientFor(plugin string, uses ...bus.Permissions) (bus.Bus, error) {
	if !agent.ValidName(plugin) {
		return nil, fmt.Errorf("message bus client for %q: invalid plugin name", plugin)
	}
	cl, err := s.ensureClient()
	if err != nil {
		return nil, err
	}
	perms, ok := s.broker.cfg.Permissions[plugin]
	if !ok {
		perms = bus.DefaultPermissions(plugin)
		for _, u := range uses {
			perms = perms.With(u)
		}
	}
	log, m, srv := s.broker.log, s.broker.metrics, s.broker.srv
	m.Known(plugin)
	return cl.Scope(plugin, perms, func(op, topic string) {
		m.Deny(plugin, op)
		log.Warn("bus permission denied", "plugin", plugin, "operation", op, "topic", topic)
		srv.record(audit.Record{Actor: plugin, Action: audit.ActionBusDenied, Target: op + " " + topic,
			Outcome: audit.OutcomeDenied, Detail: "bus permission denied: outside the plugin's permissions"})
	}), nil
}

func (s *Service) ensureClient() (*bus.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("message bus: %w", bus.ErrClosed)
	}
	if s.cl == nil {
		b := s.broker
		s.cl = bus.Dial(bus.Options{
			PublishEndpoint:   b.cfg.PublishAddress,
			SubscribeEndpoint: b.cfg.SubscribeAddress,
			Name:              Name,
			Connect: func(_ context.Context, socket string) (net.Conn, error) {
				return b.srv.connectAgent(socket)
			},
			QueueSize:        b.cfg.ClientQueue,
			SubscriptionSize: b.cfg.SubscriptionQueue,
			MaxMessageBytes:  b.cfg.MaxMessageBytes,
			TracerProvider:   b.tp,
			Metrics:          b.metrics,
			Logger:           b.log,
			ReconnectMax:     250 * time.Millisecond,
		})
	}
	return s.cl, nil
}

// client returns the shared client, creating it unless closed.
func (s *Service) client() *bus.Client {
	cl, err := s.ensureClient()
	if err != nil {
		return nil
	}
	return cl
}

func (s *Service) close() {
	s.mu.Lock()
	cl := s.cl
	s.closed = true
	s.mu.Unlock()
	if cl != nil {
		_ = cl.Close()
	}
}

var (
	_ agent.Plugin          = (*Broker)(nil)
	_ agent.ServiceProvider = (*Broker)(nil)
	_ agent.HealthChecker   = (*Broker)(nil)
	_ bus.Provider          = (*Service)(nil)
)

var _ agent.PeerChecker = (*Broker)(nil)
