package extmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// Name is the plugin's name in core.yaml.
const Name = "extmanager"

// Version of the plugin.
const Version = "0.1.0"

// ExtManager is the plugin. Build it with Factory.
type ExtManager struct {
	agent.Base
	cfg Config

	catalog *catalog.Catalog
	metrics *metrics
	client  *http.Client // of the targets without an http_config
	clients *clients     // of every target
	// inproc holds the in-process AI plugins already asked, by id; only
	// scanInProcess uses it.
	inproc map[string]catalog.AI
	probe  *prober // GET /probe

	// Set in Initialize.
	host     agent.Host
	log      *slog.Logger
	plugins  agent.PluginDirectory
	bus      bus.Bus
	detector *detector
	engine   *health.Engine // nil when health checks are off
	store    *store.DB      // the health history file, when configured
	sd       *discovery.Manager
	// healthMu orders what syncHealth gives the engine.
	healthMu sync.Mutex

	mu        sync.Mutex // guards the fields below and cfg after Start
	started   bool
	dirCancel context.CancelFunc // ends the directory source Reload replaces
	dirDone   chan struct{}
	unsub     []func() // the catalog subscriptions
	// lastSD is what discovery found last, applied again when a reload
	// changes the section's http_config.
	lastSD []discovery.Target
}

// config returns the current config.
func (e *ExtManager) config() Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Factory builds the ExtManager from its section.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg, err := decodeConfig(s)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// New returns an ExtManager with cfg.
func New(cfg Config) *ExtManager {
	deps := []string{agent.ServicePlugins}
	if cfg.Bus.Enabled {
		deps = append(deps, bus.ServiceName)
	}
	e := &ExtManager{
		Base: agent.NewBase(agent.Metadata{
			Name: Name, Version: Version, Priority: agent.PriorityBusiness, Dependencies: deps,
			Description: "discovers AI plugins, detects their capabilities and keeps their catalog",
		}),
		cfg:     cfg,
		catalog: catalog.New(nil),
		inproc:  map[string]catalog.AI{},
		client:  newDefaultClient(cfg.Health.Concurrency),
	}
	e.probe = newProber(e, cfg.Probe.Concurrency)
	e.clients = &clients{def: e.client}
	return e
}

// Catalog returns the plugin's catalog.
func (e *ExtManager) Catalog() *catalog.Catalog { return e.catalog }

// Services lists the catalog and, while health checks are on, their history.
func (e *ExtManager) Services() []string {
	if e.cfg.Health.Enabled {
		return []string{catalog.ServiceName, health.HistoryService}
	}
	return []string{catalog.ServiceName}
}

// Initialize takes the host services and the bus client and provides the
// catalog.
func (e *ExtManager) Initialize(ctx context.Context, h agent.Host) error {
	e.log, e.host = h.Logger(), h
	var err error
	if e.plugins, err = agent.Require[agent.PluginDirectory](ctx, h, agent.ServicePlugins); err != nil {
		return err
	}
	if e.cfg.Bus.Enabled {
		p, err := agent.Require[bus.Provider](ctx, h, bus.ServiceName)
		if err != nil {
			return err
		}
		if e.bus, err = p.ClientFor(Name, e.BusTopics().Uses); err != nil {
			return fmt.Errorf("bus client: %w", err)
		}
	}
	e.metrics = newMetrics(e.catalog)
	if err := h.Metrics().Register(e.metrics); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := h.Metrics().Register(e.probe.requests); err != nil {
		return fmt.Errorf("register probe metrics: %w", err)
	}
	if err := e.initHealth(ctx, h, e.cfg.Health); err != nil {
		return err
	}
	if e.sd, err = discovery.NewManager(discovery.Options{
		Logger: e.log, Registerer: h.Metrics(), OnUpdate: e.applyDiscovered,
		Check: func(t discovery.Target) error {
			_, err := discovered(t, nil).spec(catalog.SourceDiscovery)
			return err
		},
	}); err != nil {
		return err
	}
	// Detection requests carry their span's trace context, as probes do.
	tp := h.TracerProvider()
	traced := probes.WithTraceContext(e.client, tp, nil)
	clientOf := func(id string) *http.Client {
		p, _ := e.catalog.Get(id)
		if c := e.clients.of(p); c != e.client {
			return probes.WithTraceContext(c, tp, nil)
		}
		return traced
	}
	e.detector = newDetector(e.catalog, clientOf, e.log,
		tp.Tracer("github.com/vitals-dev/vitals/plugins/extmanager"), e.cfg.Detection)
	if e.engine != nil {
		if err := h.Provide(health.HistoryService, e.engine.History()); err != nil {
			return err
		}
	}
	return h.Provide(catalog.ServiceName, e.catalog)
}

// Start runs the discovery sources. Static targets are in the catalog when
// it returns; the directory has been scanned once.
// Its goroutines are the Host's: they end when the host stops the
// ExtManager, before and while Stop runs.
func (e *ExtManager) Start(context.Context) error {
	ctx := e.host.Context()
	e.mu.Lock()
	e.started = true
	e.mu.Unlock()

	e.unsub = append(e.unsub, e.catalog.Subscribe(e.onEvent(ctx)))

	cfg := e.config()
	e.applyTargets(cfg.Targets, cfg.shard)
	e.host.Go(func(ctx context.Context) {
		e.detector.loop(ctx)
		e.detector.wait() // the detections it started
	})
	e.startDirectory(ctx, cfg.Directory, cfg.shard)
	// A reload before Start changed only e.cfg.
	if err := e.sd.ApplyConfig(cfg.Discovery, cfg.shard); err != nil {
		e.log.Warn("discovery", "err", err)
	}
	e.startDiscovery(ctx)
	e.startInProcess(ctx)
	if e.bus != nil {
		if err := e.startBus(ctx); err != nil {
			return err // the host stops what started
		}
	}
	e.startHealth()
	return nil
}

// applyTargets makes the config source's plugins exactly the targets
// that shard owns.
func (e *ExtManager) applyTargets(targets []Target, shard discovery.Shard) {
	var specs []catalog.Spec
	for _, t := range targets {
		if !shard.Owns(t.ID) {
			continue
		}
		s, _ := t.spec(catalog.SourceConfig) // checked by the factory
		specs = append(specs, s)
	}
	e.sd.ObserveShard(string(catalog.SourceConfig), len(targets), len(specs))
	for _, err := range e.catalog.Reconcile(catalog.SourceConfig, specs, "removed from config") {
		e.discoveryError(catalog.SourceConfig, err)
	}
}

// startDirectory watches dir ("" for none) for the manifests shard owns
// and returns once it has been scanned; it stops the directory source
// that ran before.
func (e *ExtManager) startDirectory(ctx context.Context, dir string, shard discovery.Shard) {
	e.mu.Lock()
	cancel, done := e.dirCancel, e.dirDone
	e.dirCancel, e.dirDone = nil, nil
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done // its plugins are deregistered when it returns
	}
	if dir == "" {
		return
	}
	dctx, dcancel := context.WithCancel(ctx)
	ready, finished := make(chan struct{}), make(chan struct{})
	ds := newDirSource(dir, e.catalog, e.log, func(string, error) {
		e.metrics.discoveryErrors.WithLabelValues(string(catalog.SourceDirectory)).Inc()
	})
	ds.owns = shard.Owns
	ds.onShard = func(seen, owned int) { e.sd.ObserveShard(string(catalog.SourceDirectory), seen, owned) }
	e.host.Go(func(context.Context) {
		defer close(finished)
		ds.run(dctx, ready)
	})
	<-ready
	e.mu.Lock()
	e.dirCancel, e.dirDone = dcancel, finished
	e.mu.Unlock()
}

// BusTopics implements bus.TopicUser: with the bus source on, the
// ExtManager listens for announcements (it cannot start without that) and
// publishes health requests, health status and alerts.
func (e *ExtManager) BusTopics() bus.Topics {
	e.mu.Lock()
	on := e.cfg.Bus.Enabled
	e.mu.Unlock()
	if !on {
		return bus.Topics{}
	}
	return bus.Topics{
		Uses: bus.Permissions{
			Publish:   []string{TopicHealthRequest, TopicHealthStatus, TopicAlerts},
			Subscribe: []string{"plugin."},
		},
		Needs: bus.Permissions{Subscribe: []string{"plugin."}},
	}
}

// Reload applies a changed section while running: static targets are
// reconciled (so bus and in-process plugins are kept), a new directory is
// watched instead of the old one, changed discovery configs restart (the
// unchanged keep running and keep their targets), a new shard applies to
// every sharded source, detection and heartbeat settings apply from
// the next use (a new redetect_interval at once), and every server is
// detected again. Turning the bus source on or off changes the
// plugin's dependencies and is refused: disable and enable the plugin.
func (e *ExtManager) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decodeConfig(s)
	if err != nil {
		return err
	}
	e.mu.Lock()
	old, started := e.cfg, e.started
	if cfg.Bus.Enabled != old.Bus.Enabled {
		e.mu.Unlock()
		return fmt.Errorf("bus.enabled cannot change while the extmanager runs; disable and enable the plugin")
	}
	if cfg.Health.Enabled != old.Health.Enabled || cfg.Health.History.Path != old.Health.History.Path ||
		cfg.Health.Concurrency != old.Health.Concurrency {
		e.mu.Unlock()
		return fmt.Errorf("health.enabled, health.concurrency and health.history.path cannot change while the extmanager runs; disable and enable the plugin")
	}
	e.cfg = cfg
	e.mu.Unlock()
	e.probe.resize(cfg.Probe.Concurrency)
	if !started {
		return nil // not started: Start reads the new config
	}
	e.applyTargets(cfg.Targets, cfg.shard)
	if cfg.Directory != old.Directory || cfg.shard != old.shard {
		e.startDirectory(e.host.Context(), cfg.Directory, cfg.shard)
	}
	if !reflect.DeepEqual(cfg.HTTPConfig, old.HTTPConfig) {
		e.mu.Lock()
		last := e.lastSD
		e.mu.Unlock()
		e.applyDiscovered(last) // the discovered targets take the new http_config
	}
	e.clients.keep(e.catalog, e.config().Probe.httpConfigs())
	sdErr := e.sd.ApplyConfig(cfg.Discovery, cfg.shard)
	e.detector.setOptions(cfg.Detection)
	// A reload is a person saying something changed: ask every server
	// again (its credentials may have, or the server behind them).
	e.detector.requestAll()
	if e.engine != nil {
		e.engine.SetConfig(cfg.Health)
	}
	return sdErr
}

// startDiscovery runs the Prometheus-style discovery sources until ctx
// ends; their plugins leave the catalog with them.
func (e *ExtManager) startDiscovery(ctx context.Context) {
	e.host.Go(func(context.Context) {
		defer e.catalog.Reconcile(catalog.SourceDiscovery, nil, "extmanager stopped")
		e.sd.Run(ctx)
	})
}

// applyDiscovered makes the discovery source's plugins exactly the
// targets this shard owns.
func (e *ExtManager) applyDiscovered(ts []discovery.Target) {
	e.mu.Lock()
	e.lastSD = ts
	hc := e.cfg.HTTPConfig
	e.mu.Unlock()
	specs := make([]catalog.Spec, 0, len(ts))
	for _, t := range ts {
		s, err := discovered(t, hc).spec(catalog.SourceDiscovery)
		if err != nil {
			continue // the Manager's Check dropped and counted these
		}
		specs = append(specs, s)
	}
	for _, err := range e.catalog.Reconcile(catalog.SourceDiscovery, specs, "no longer discovered") {
		e.discoveryError(catalog.SourceDiscovery, err)
	}
	e.clients.keep(e.catalog, e.config().Probe.httpConfigs())
}

// onEvent logs, counts and publishes every catalog change, and asks for
// detection where the source changed what a server is.
func (e *ExtManager) onEvent(ctx context.Context) func(catalog.Event) {
	return func(ev catalog.Event) {
		e.metrics.events.WithLabelValues(string(ev.Type), string(ev.Source)).Inc()
		attrs := []any{"id", ev.ID, "source", ev.Source, "kind", ev.Plugin.Kind}
		if ev.Version != "" {
			attrs = append(attrs, "version", ev.Version)
		}
		if ev.OldVersion != "" {
			attrs = append(attrs, "old_version", ev.OldVersion)
		}
		if ev.Reason != "" {
			attrs = append(attrs, "reason", ev.Reason)
		}
		level := slog.LevelInfo
		if ev.Type == catalog.EventLost {
			level = slog.LevelWarn
		}
		e.log.Log(ctx, level, "ai plugin "+string(ev.Type), attrs...)

		if e.bus != nil {
			payload, err := json.Marshal(ev)
			if err == nil {
				err = e.bus.Publish(ctx, "extmanager."+string(ev.Type), bus.Message{ContentType: "application/json", Payload: payload})
			}
			if err != nil && !errors.Is(err, bus.ErrClosed) {
				e.log.Warn("catalog event not published", "event", ev.Type, "id", ev.ID, "err", err)
			}
		}

		if ev.Type == catalog.EventDeregistered {
			e.detector.forget(ev.ID)
		}
		if ev.FromDetection || ev.Plugin.Endpoint == "" || ev.Source == catalog.SourceInProcess {
			return
		}
		switch ev.Type {
		case catalog.EventRegistered, catalog.EventVersionChanged:
			e.detector.request(ev.ID)
		case catalog.EventUpdated:
			if ev.Reason == "changed at its source" {
				e.detector.request(ev.ID)
			}
		}
	}
}

func (e *ExtManager) discoveryError(src catalog.Source, err error) {
	e.metrics.discoveryErrors.WithLabelValues(string(src)).Inc()
	e.log.Error("ai plugin not registered", "source", src, "err", err)
}

// Stop ends the catalog subscriptions and the health engine, and closes
// the health history and the bus client; the host has cancelled the
// discovery goroutines and waits for them after. It is safe without Start
// and safe twice.
func (e *ExtManager) Stop(ctx context.Context) error {
	e.mu.Lock()
	unsub := e.unsub
	e.unsub = nil
	e.mu.Unlock()
	for _, u := range unsub {
		u()
	}
	err := e.stopHealth(ctx)
	if e.bus != nil {
		err = errors.Join(err, e.bus.Close())
	}
	e.clients.closeIdle()
	return err
}

// HealthCheck reports degraded while any discovered server could not be
// asked what it is.
func (e *ExtManager) HealthCheck(ctx context.Context) agent.Health {
	h := e.Base.HealthCheck(ctx)
	if h.Status != agent.HealthOK {
		return h
	}
	var failed []string
	all := e.catalog.List(catalog.Filter{})
	for _, p := range all {
		if p.Detection.State == catalog.DetectFailed {
			failed = append(failed, p.ID)
		}
	}
	h.Details = map[string]string{"ai_plugins": fmt.Sprint(len(all))}
	if len(failed) > 0 {
		h.Status, h.Message = agent.HealthDegraded, fmt.Sprintf("detection failed for %v", failed)
	}
	if e.engine != nil {
		r := e.engine.Rollup()
		h.Details["ai_health"] = string(r.Status)
		h.Details["ai_health_ready"] = fmt.Sprint(r.Ready)
		if e.config().Health.Rollup.Readiness && !r.Ready {
			h.Status, h.Message = agent.HealthFailing, "AI health roll-up ("+r.Policy+"): "+r.Reason
		}
	}
	return h
}

// Ready makes the agent not ready while the AI health roll-up says the
// host cannot serve, when health.rollup.readiness is set.
func (e *ExtManager) Ready() error {
	if e.engine == nil || !e.config().Health.Rollup.Readiness {
		return nil
	}
	if r := e.engine.Rollup(); !r.Ready {
		return fmt.Errorf("AI health roll-up (%s): %s", r.Policy, r.Reason)
	}
	return nil
}

var (
	_ agent.Plugin           = (*ExtManager)(nil)
	_ agent.ServiceProvider  = (*ExtManager)(nil)
	_ agent.RouteProvider    = (*ExtManager)(nil)
	_ agent.HealthChecker    = (*ExtManager)(nil)
	_ agent.Reloader         = (*ExtManager)(nil)
	_ agent.ReadinessChecker = (*ExtManager)(nil)
)
