package extmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Bus topics of the health engine.
const (
	// TopicHealthStatus prefixes the topic of each plugin's state changes.
	TopicHealthStatus = "health.status."
	// TopicHealthRequest prefixes the topic that bus plugins answer health
	// requests on.
	TopicHealthRequest = "health.request."
	// TopicAlerts prefixes alerts, by severity.
	TopicAlerts = "alerts."
	// AlertUnhealthy is the name of the alert raised while an AI plugin is
	// unhealthy.
	AlertUnhealthy = "AIPluginUnhealthy"
	// AlertStuck is the name of the alert raised while an AI plugin is
	// stuck: requests in flight and no progress.
	AlertStuck = "AIPluginStuck"
)

// Engine returns the health engine; nil before Initialize or when health
// is disabled.
func (e *ExtManager) Engine() *health.Engine { return e.engine }

// initHealth opens the history store and builds the engine.
func (e *ExtManager) initHealth(ctx context.Context, h agent.Host, cfg health.Config) error {
	if !cfg.Enabled {
		return nil
	}
	tp := h.TracerProvider()
	if path := cfg.History.Path; path != "" {
		db, err := store.Open(ctx, path)
		if err != nil {
			return fmt.Errorf("health history: %w", err)
		}
		e.store = db
	}
	hist, err := health.OpenHistory(ctx, e.store, cfg.History, e.log)
	if err != nil {
		if e.store != nil {
			_ = e.store.Close()
			e.store = nil
		}
		return err
	}
	e.engine = health.New(health.Options{
		Config: cfg, Client: e.client, Logger: e.log, TracerProvider: tp, History: hist,
		// The agent's meter provider (exporters/telemetry installs it), a
		// no-op unless OTEL_METRICS_EXPORTER or an OTLP endpoint asks.
		MeterProvider: otel.GetMeterProvider(),
		GenAILatest:   telemetry.SemconvOptIn("gen_ai_latest_experimental"),
		Probes: map[health.Mode][]health.Probe{
			health.ModeBus: {
				{Name: health.ProbeHeartbeat, Run: e.probeHeartbeat},
				{Name: health.ProbeBusHealth, Run: e.probeBusHealth},
			},
			health.ModeSelf: {{Name: health.ProbeSelf, Run: e.probeSelf}},
		},
		OnVerdict:    e.onVerdict,
		OnTransition: e.onTransition,
		FindPID:      newPIDCache().lookup,
	})
	if err := h.Metrics().Register(e.engine.Metrics()); err != nil {
		return fmt.Errorf("register health metrics: %w", err)
	}
	if e.store != nil {
		if err := h.Metrics().Register(hist); err != nil {
			return fmt.Errorf("register health history metrics: %w", err)
		}
	}
	return nil
}

// startHealth feeds the catalog to the engine and starts it.
func (e *ExtManager) startHealth() {
	if e.engine == nil {
		return
	}
	e.unsub = append(e.unsub, e.catalog.Subscribe(func(ev catalog.Event) { e.syncHealth(ev.ID) }))
	for _, p := range e.catalog.List(catalog.Filter{}) {
		e.syncHealth(p.ID)
	}
	e.engine.Start()
}

// syncHealth gives the engine plugin id as the catalog holds it now, or
// removes it when the catalog no longer does. The catalog's events and
// startHealth's first pass both go through it, one at a time, and each
// reads the catalog afresh: the list of the first pass is read before
// the detections already under way end, and a copy of a plugin from
// before its detection, applied after the detection's event, would leave
// its kind unidentified until its next change. (The catalog emits after
// it unlocks, so two events of one plugin may come in either order too.)
func (e *ExtManager) syncHealth(id string) {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	if p, ok := e.catalog.Get(id); ok {
		e.engine.Upsert(healthTarget(p, e.clients))
	} else {
		e.engine.Remove(id)
	}
}

// stopHealth stops the engine and closes the store.
func (e *ExtManager) stopHealth(ctx context.Context) error {
	if e.engine == nil {
		return nil
	}
	err := e.engine.Stop(ctx)
	if e.store != nil {
		if cerr := e.store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("health history: %w", cerr))
		}
	}
	return err
}

// onVerdict keeps each verdict in the catalog, and asks detection again
// when a check of an identified server failed in a way that says the
// server is not what detection found: a 404 from its own API
// (bad_response: a model renamed or removed) or not ready (the model it
// was asked about is not served).
func (e *ExtManager) onVerdict(id string, s health.Status) {
	e.catalog.SetHealth(id, s)
	if l := s.Last; l != nil && !l.OK && (l.Class == probes.ClassBadResponse || l.Class == probes.ClassNotReady) {
		e.detector.nudge(id)
	}
}

// onTransition announces a state change, and asks detection again when a
// server recovers from unhealthy or stuck: it may have come back (been
// restarted) as another version, with other models, or as another server.
func (e *ExtManager) onTransition(ctx context.Context, t health.Transition) {
	if p, ok := e.catalog.Get(t.Plugin); ok && detectable(p) && t.From.Failing() && !t.To.Failing() {
		e.detector.request(t.Plugin)
	}
	e.announceTransition(ctx, t)
}

// healthTarget is how the engine sees a catalog entry: servers are probed
// over HTTP, bus plugins without an endpoint over the bus, in-process
// plugins without an endpoint through their own health check.
func healthTarget(p catalog.AIPlugin, cs *clients) health.Target {
	t := health.Target{
		ID: p.ID, Mode: health.ModeHTTP, Kind: p.Kind, Endpoint: p.Endpoint, MetricsURL: p.MetricsURL, Model: p.Spec().Model,
		Models: p.Models, Capabilities: p.Capabilities, PID: p.PID, Dependencies: p.Dependencies,
	}
	if p.Spec().HTTPConfig != nil {
		t.Client = cs.of(p) // with its credentials, TLS and proxy
	}
	if p.Endpoint == "" {
		t.Mode = health.ModeSelf
		if p.Source == catalog.SourceBus {
			t.Mode = health.ModeBus
		}
	}
	return t
}

// probeHeartbeat fails for a bus plugin whose heartbeats stopped.
func (e *ExtManager) probeHeartbeat(_ context.Context, t health.Target) (probes.Result, error) {
	p, ok := e.catalog.Get(t.ID)
	if !ok {
		return probes.Result{}, fmt.Errorf("%s left the catalog: %w", t.ID, probes.ErrStale)
	}
	if p.Presence == catalog.PresenceLost {
		return probes.Result{}, fmt.Errorf("no heartbeat since %s: %w", p.LastSeen.Format(time.RFC3339), probes.ErrStale)
	}
	return probes.Result{}, nil
}

// probeBusHealth asks a bus plugin on health.request.<plugin>: through the
// routing plugin while it runs, else straight on the bus.
func (e *ExtManager) probeBusHealth(ctx context.Context, t health.Target) (probes.Result, error) {
	if e.bus == nil {
		return probes.Result{}, fmt.Errorf("no bus: %w", probes.ErrStale)
	}
	msg, err := bus.NewProto(&busv1.HealthRequest{Plugin: t.ID})
	if err != nil {
		return probes.Result{}, fmt.Errorf("health request: %w", err)
	}
	var resp bus.Message
	if r, ok := e.router(ctx); ok {
		resp, err = r.Request(ctx, t.ID, msg)
	} else {
		resp, err = e.bus.Request(ctx, TopicHealthRequest+t.ID, msg)
	}
	if err != nil {
		return probes.Result{}, fmt.Errorf("health request to %s: %w", t.ID, err)
	}
	// Anyone on the bus may answer on a reply topic: only the peer that
	// announced the plugin speaks for its health.
	if p, ok := e.catalog.Get(t.ID); ok && p.Source == catalog.SourceBus && resp.Peer != p.Owner {
		return probes.Result{}, fmt.Errorf("health response of %s: %w", t.ID, &probes.DecodeError{
			What: "health response", Err: fmt.Errorf("answered by %q, not by %q, which announced the plugin", resp.Peer, p.Owner)})
	}
	var hr busv1.HealthResponse
	if err := resp.Decode(&hr); err != nil {
		return probes.Result{}, fmt.Errorf("health response of %s: %w", t.ID, &probes.DecodeError{What: "health response", Err: err})
	}
	if hr.GetState() == busv1.HealthState_HEALTH_STATE_UNHEALTHY {
		return probes.Result{}, fmt.Errorf("%s: %s: %w", t.ID, hr.GetMessage(), probes.ErrReported)
	}
	return probes.Result{}, nil
}

// router returns the routing service if its plugin is running.
func (e *ExtManager) router(ctx context.Context) (bus.Requester, bool) {
	if e.host == nil {
		return nil, false
	}
	v, err := e.host.Get(ctx, bus.RoutingService)
	if err != nil {
		return nil, false
	}
	r, ok := v.(bus.Requester)
	return r, ok
}

// probeSelf asks an in-process AI plugin's own health check.
func (e *ExtManager) probeSelf(ctx context.Context, t health.Target) (probes.Result, error) {
	for _, p := range e.plugins.RunningPlugins() {
		if p.Metadata().Name != t.ID {
			continue
		}
		ai, ok := p.(catalog.AI)
		if !ok {
			break
		}
		h := ai.HealthCheck(ctx)
		if h.Status == agent.HealthFailing {
			return probes.Result{}, fmt.Errorf("%s: %s: %w", t.ID, h.Message, probes.ErrReported)
		}
		return probes.Result{}, nil
	}
	return probes.Result{}, fmt.Errorf("%s is not running: %w", t.ID, probes.ErrStale)
}

// busState maps a health state to the wire's.
func busState(s health.State) busv1.HealthState {
	switch s {
	case health.StateHealthy:
		return busv1.HealthState_HEALTH_STATE_HEALTHY
	case health.StateDegraded:
		return busv1.HealthState_HEALTH_STATE_DEGRADED
	case health.StateUnhealthy:
		return busv1.HealthState_HEALTH_STATE_UNHEALTHY
	case health.StateOverloaded:
		return busv1.HealthState_HEALTH_STATE_OVERLOADED
	case health.StateLoading:
		return busv1.HealthState_HEALTH_STATE_LOADING
	case health.StateCold:
		return busv1.HealthState_HEALTH_STATE_COLD
	case health.StateSleeping:
		return busv1.HealthState_HEALTH_STATE_SLEEPING
	case health.StateStuck:
		return busv1.HealthState_HEALTH_STATE_STUCK
	}
	return busv1.HealthState_HEALTH_STATE_UNSPECIFIED
}

// announceTransition publishes a state change on health.status.<plugin>
// (its state, and the state's name in details "state", "from" and "to"),
// and a critical alert on alerts.critical when the plugin enters a state
// that needs a human, unhealthy or stuck (starts_at set), and when it
// leaves it (ends_at set too, as Alertmanager resolves alerts).
func (e *ExtManager) announceTransition(ctx context.Context, t health.Transition) {
	if e.bus == nil {
		return
	}
	publish := func(topic string, m *bus.Message) {
		if err := e.bus.Publish(ctx, topic, *m); err != nil && !errors.Is(err, bus.ErrClosed) {
			e.log.Warn("health message not published", "topic", topic, "err", err)
		}
	}
	st := &busv1.HealthStatus{
		Plugin: t.Plugin, State: busState(t.To), Message: t.Reason, Checked: timestamppb.New(t.Time),
		Details: map[string]string{"from": string(t.From), "to": string(t.To), "state": string(t.To)},
	}
	if m, err := bus.NewProto(st); err == nil {
		publish(TopicHealthStatus+t.Plugin, &m)
	}
	if t.From.Failing() {
		a := failingAlert(t.Plugin, t.From, t.Reason)
		a.Summary = fmt.Sprintf("AI plugin %s is no longer %s (%s)", t.Plugin, t.From, t.To)
		if s, ok := e.enteredAt(t.Plugin, t.From); ok {
			a.StartsAt = timestamppb.New(s)
		}
		a.EndsAt = timestamppb.New(t.Time)
		if m, err := bus.NewProto(a); err == nil {
			publish(TopicAlerts+"critical", &m)
		}
	}
	if t.To.Failing() {
		a := failingAlert(t.Plugin, t.To, t.Reason)
		a.StartsAt = timestamppb.New(t.Time)
		if m, err := bus.NewProto(a); err == nil {
			publish(TopicAlerts+"critical", &m)
		}
	}
}

// failingAlert is the alert of a plugin in state s, unhealthy or stuck.
func failingAlert(plugin string, s health.State, reason string) *busv1.Alert {
	name := AlertUnhealthy
	if s == health.StateStuck {
		name = AlertStuck
	}
	return &busv1.Alert{
		Name: name, Severity: busv1.Severity_SEVERITY_CRITICAL,
		Summary:     fmt.Sprintf("AI plugin %s is %s", plugin, s),
		Description: reason,
		Labels:      map[string]string{"plugin": plugin, "alertname": name, "severity": "critical"},
	}
}

// enteredAt finds when the plugin last entered state s, from the
// in-memory history.
func (e *ExtManager) enteredAt(id string, s health.State) (time.Time, bool) {
	_, ts, err := e.engine.History().Query(context.Background(), id, time.Now().Add(-30*24*time.Hour), time.Now().Add(time.Hour), 16)
	if err != nil {
		return time.Time{}, false
	}
	for _, t := range ts {
		if t.To == s {
			return t.Time, true
		}
	}
	return time.Time{}, false
}
