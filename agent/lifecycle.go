package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vitals-dev/vitals/internal/hub"
)

// Errors a lifecycle step can end with, for errors.Is.
var (
	ErrStepTimeout = errors.New("timed out")
	ErrPanic       = errors.New("panicked")
	// ErrAbandoned marks a plugin the host gave up on: a step of it timed
	// out and was still running when the next step was due, so the host
	// never steps it again (its goroutine may still run until the agent
	// exits).
	ErrAbandoned = errors.New("abandoned")
	// ErrUnknownPlugin is returned for a name the registry does not know.
	ErrUnknownPlugin = errors.New("unknown plugin")
	// ErrConflict is returned when a change would break a running plugin's
	// dependencies.
	ErrConflict = errors.New("conflict")

	errReloadRejected = errors.New("reload rejected")
)

// PanicError is a panic recovered from a plugin step.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panicked: %v", e.Value) }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// ManagerOptions configures a lifecycle manager.
type ManagerOptions struct {
	Registry *Registry
	Logger   *slog.Logger
	// TracerProvider records a span for every lifecycle step; nil means none.
	TracerProvider trace.TracerProvider
	// Metrics receives the host's metrics; nil means none.
	Metrics *HostMetrics
	// Services are put in the container before any plugin starts, by name,
	// in addition to the events hub.
	Services map[string]any
}

// Manager runs plugins through their lifecycle: it builds them from config,
// initializes and starts them in dependency order, isolates their failures,
// applies config changes and stops them in reverse order.
//
// Lifecycle operations (Start, Reload, Enable, Disable, Stop) are serialized;
// the read methods are safe for concurrent use at any time.
type Manager struct {
	reg       *Registry
	log       *slog.Logger
	tracer    trace.Tracer
	metrics   *HostMetrics
	events    *Events
	container *Container
	registry  *pluginRegistry // nil when the host has no metrics registry

	op sync.Mutex // serializes lifecycle operations

	mu      sync.Mutex // guards the fields below
	cfg     *Config
	entries map[string]*entry
	order   []string            // start order of enabled plugins
	deps    map[string][]string // plugin -> plugins it needs
	phase   phase
	changed hub.Hub[struct{}] // OnChange functions, run one change at a time
}

type phase int

const (
	phaseNew phase = iota
	phaseStarting
	phaseRunning
	phaseStopping
	phaseStopped
)

type entry struct {
	name        string
	plugin      Plugin
	meta        Metadata
	pc          PluginConfig
	state       State
	reason      string // why failed, or why skipped
	initialized bool   // Initialize returned nil, so Stop is owed
	since       time.Time
	timings     map[string]time.Duration

	// late is a step that overran its bound and whose goroutine the host
	// stopped waiting for; the next step waits for it first. nil when none.
	late *lateStep
	// abandoned is set when a late step did not end in time for the next
	// one: the plugin is never stepped again. gaveUp says why.
	abandoned bool
	gaveUp    error
	// stranded is the abandoned step while it runs; returned is set when
	// it returns after all.
	stranded string
	returned bool
}

// lateStep is a step still running after the host gave up waiting for it.
type lateStep struct {
	step  string
	began time.Time
	done  chan error // receives the step's result when it returns
}

// budget is the bound of one step: waiting for a late step of the same
// plugin counts against it, so a plugin's stop takes at most stop_timeout.
type budget struct {
	d   time.Duration
	end time.Time
}

func newBudget(d time.Duration) budget { return budget{d: d, end: time.Now().Add(d)} }

// NewManager returns a manager with an empty container holding the host's
// services.
func NewManager(o ManagerOptions) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	if o.Registry == nil {
		o.Registry = NewRegistry()
	}
	m := &Manager{
		reg:       o.Registry,
		log:       o.Logger,
		tracer:    o.TracerProvider.Tracer("github.com/vitals-dev/vitals/agent"),
		metrics:   o.Metrics,
		events:    NewEvents(),
		container: NewContainer(o.Logger),
		entries:   map[string]*entry{},
		cfg:       DefaultConfig(),
	}
	_ = m.container.Provide(ServiceEvents, m.events)
	_ = m.container.Provide(ServiceTracerProvider, o.TracerProvider)
	_ = m.container.Provide(ServicePlugins, PluginDirectory(m))
	for name, v := range o.Services {
		if reg, ok := v.(prometheus.Registerer); ok && name == ServiceMetrics {
			m.registry = newPluginRegistry(reg)
			v = m.registry
		}
		if err := m.container.Provide(name, v); err != nil {
			m.log.Error("host service not provided", "service", name, "err", err)
		}
	}
	return m
}

// Container returns the host's view of the service container.
func (m *Manager) Container() *Container { return m.container }

// Events returns the hub of lifecycle events.
func (m *Manager) Events() *Events { return m.events }

// Config returns the config the manager last applied.
func (m *Manager) Config() *Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// OnChange registers fn to run after every lifecycle operation that changed
// which plugins run (the HTTP front rebuilds its routes with it).
func (m *Manager) OnChange(fn func()) {
	m.changed.Subscribe(func(struct{}) { fn() })
}

func (m *Manager) notifyChanged() { m.changed.Emit(struct{}{}) }

// Start builds the enabled plugins of cfg and initializes, then starts them
// in dependency order. A failing optional plugin is marked failed and its
// dependents are skipped; a failing required plugin, or ctx ending, stops
// what was started (in reverse) and returns the error. Start is called once.
func (m *Manager) Start(ctx context.Context, cfg *Config) error {
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	if m.phase != phaseNew {
		m.mu.Unlock()
		return errors.New("manager already started")
	}
	m.phase = phaseStarting
	m.mu.Unlock()

	ctx, span := m.tracer.Start(ctx, "agent.startup")
	defer span.End()
	began := time.Now()

	order, deps, entries, err := m.build(cfg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		m.setPhase(phaseStopped)
		return err
	}
	m.mu.Lock()
	m.cfg, m.order, m.deps = cfg, order, deps
	for name, e := range entries {
		m.entries[name] = e
	}
	m.mu.Unlock()
	for _, e := range entries {
		m.publishState(e, "")
	}
	m.log.InfoContext(ctx, "starting plugins", "order", strings.Join(order, " → "))

	if err := m.bringUp(ctx, order); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		// Stop what started, in reverse, with a fresh bound: ctx may be done.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.stopTimeout()*time.Duration(len(order)+1))
		defer cancel()
		if serr := m.bringDown(stopCtx, order); serr != nil {
			err = errors.Join(err, serr)
		}
		m.setPhase(phaseStopped)
		m.notifyChanged()
		return err
	}
	if m.metrics != nil {
		m.metrics.startup.Set(time.Since(began).Seconds())
	}
	// The startup span ends before the agent reports ready, so whoever saw
	// /readyz answer 200 finds startup's trace complete.
	span.End()
	m.setPhase(phaseRunning)
	m.notifyChanged()
	return nil
}

// build creates a plugin value for every registered plugin that cfg
// enables, and an entry in state disabled for the others.
func (m *Manager) build(cfg *Config) ([]string, map[string][]string, map[string]*entry, error) {
	entries := map[string]*entry{}
	built := map[string]Plugin{}
	for _, name := range m.reg.Names() {
		pc := cfg.Plugin(name)
		e := &entry{name: name, pc: pc, state: StateDisabled, since: time.Now(), timings: map[string]time.Duration{}}
		entries[name] = e
		if !pc.Enabled {
			// Factories allocate nothing, so a throwaway build tells what
			// a disabled plugin is; one whose section is incomplete
			// (a key it needs only when enabled) stays nameless.
			if p, err := m.reg.New(name, pc.Section); err == nil {
				e.meta = p.Metadata()
			}
			continue
		}
		p, err := m.reg.New(name, pc.Section)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("build plugin %q: %w", name, err)
		}
		e.plugin, e.meta, e.state = p, p.Metadata(), StateRegistered
		built[name] = p
	}
	// The host's services, including any main added (hostServices and more).
	order, deps, err := planPlugins(built, m.container.hostServiceNames())
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkPeers(built); err != nil {
		return nil, nil, nil, err
	}
	return order, deps, entries, nil
}

// bringUp initializes, then starts, the named plugins in order. It returns
// an error only when a required plugin fails or ctx ends.
func (m *Manager) bringUp(ctx context.Context, order []string) error {
	for _, phase := range []string{"initialize", "start"} {
		for _, name := range order {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("startup interrupted before %s of %q: %w", phase, name, err)
			}
			e := m.entry(name)
			if e == nil || e.plugin == nil {
				continue
			}
			want := StateRegistered
			if phase == "start" {
				want = StateInitialized
			}
			if st := m.stateOf(e); st != want {
				continue // failed or skipped in the earlier phase
			}
			if dep, st := m.failedDependency(name); dep != "" {
				m.skip(ctx, e, fmt.Sprintf("dependency %q is %s", dep, st))
				continue
			}
			var err error
			if phase == "initialize" {
				err = m.initialize(ctx, e)
			} else {
				err = m.start(ctx, e)
			}
			if err != nil && e.pc.Required {
				return fmt.Errorf("required plugin %q failed to %s: %w", name, phase, err)
			}
		}
	}
	return nil
}

// bringDown stops, in reverse of order, every plugin that initialized.
func (m *Manager) bringDown(ctx context.Context, order []string) error {
	var errs []error
	for i := len(order) - 1; i >= 0; i-- {
		e := m.entry(order[i])
		if e == nil || e.plugin == nil {
			continue
		}
		if err := m.stop(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) initialize(ctx context.Context, e *entry) error {
	m.container.Remove(e.name) // services of an earlier instance
	m.transition(ctx, e, "initialize", StateInitializing, "", 0)
	d, err := m.step(ctx, e, "initialize", newBudget(m.stepTimeout()), func(ctx context.Context) error {
		return e.plugin.Initialize(ctx, m.container.For(e.name))
	})
	if err != nil {
		m.container.failOwner(e.name, declaredServices(e.plugin), err)
		m.releaseMetrics(e.name)
		m.transition(ctx, e, "initialize", StateFailed, err.Error(), d)
		return err
	}
	m.mu.Lock()
	e.initialized = true
	m.mu.Unlock()
	m.transition(ctx, e, "initialize", StateInitialized, "", d)
	return nil
}

func (m *Manager) start(ctx context.Context, e *entry) error {
	m.transition(ctx, e, "start", StateStarting, "", 0)
	d, err := m.step(ctx, e, "start", newBudget(m.stepTimeout()), e.plugin.Start)
	if err != nil {
		m.transition(ctx, e, "start", StateFailed, err.Error(), d)
		return err
	}
	m.transition(ctx, e, "start", StateRunning, "", d)
	return nil
}

// stop stops a plugin that initialized; others are left alone. A step of
// the plugin that timed out earlier and still runs is waited for first,
// within the same stop_timeout; if it does not end, the plugin is
// abandoned and Stop is not called. A plugin whose Stop overran its bound
// and still runs is abandoned too: it is left running.
func (m *Manager) stop(ctx context.Context, e *entry) error {
	m.mu.Lock()
	skip := e.abandoned || (!e.initialized && e.late == nil)
	prev, reason, late := e.state, e.reason, e.late
	m.mu.Unlock()
	if skip {
		return nil // Manager.Stop reports abandoned plugins as left running
	}
	b := newBudget(m.stopTimeout())
	waited := m.stillRunning(e)
	if waited {
		m.transition(ctx, e, "stop", StateStopping, fmt.Sprintf("waiting up to %s for its %s, which timed out, to return", b.d, late.step), 0)
		if err := m.settle(ctx, e, "stop", b); err != nil {
			return fmt.Errorf("stop %q: %w", e.name, err)
		}
	}
	m.mu.Lock()
	owed := e.initialized
	e.initialized = false
	m.mu.Unlock()
	if !owed {
		if waited { // its late Initialize failed: back to why it failed
			m.transition(ctx, e, "stop", prev, reason, 0)
		}
		return nil
	}
	if !waited {
		m.transition(ctx, e, "stop", StateStopping, "", 0)
	}
	d, err := m.step(ctx, e, "stop", b, e.plugin.Stop)
	m.releaseMetrics(e.name)
	if err != nil {
		if m.stillRunning(e) {
			// Stop is the last step: nothing waits for it, so the host
			// gives up on the plugin now rather than build another one
			// beside it.
			m.abandon(ctx, e, "stop", fmt.Errorf("%w: %w; it is still running", ErrAbandoned, err))
			return fmt.Errorf("stop %q: %w", e.name, err)
		}
		m.transition(ctx, e, "stop", StateFailed, err.Error(), d)
		return fmt.Errorf("stop %q: %w", e.name, err)
	}
	if prev == StateFailed {
		// Keep the reason it failed for; it is stopped now.
		m.transition(ctx, e, "stop", StateStopped, reason, d)
	} else {
		m.transition(ctx, e, "stop", StateStopped, "", d)
	}
	return nil
}

// releaseMetrics unregisters the collectors a plugin registered.
func (m *Manager) releaseMetrics(plugin string) {
	if m.registry != nil {
		m.registry.release(plugin)
	}
}

// skip marks a plugin failed without running it, because a dependency did
// not come up.
func (m *Manager) skip(ctx context.Context, e *entry, reason string) {
	m.log.WarnContext(ctx, "plugin skipped", "plugin", e.name, "reason", reason)
	m.transition(ctx, e, "initialize", StateFailed, "skipped: "+reason, 0)
}

func (m *Manager) failedDependency(name string) (string, State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.deps[name] {
		if de := m.entries[d]; de != nil {
			switch de.state {
			case StateFailed, StateStopped, StateDisabled, StateStopping:
				return d, de.state
			}
		}
	}
	return "", ""
}

// settle makes sure no earlier step of e still runs before the next one,
// step, begins: it waits for a late step until b ends. If the late step
// does not end in time, e is abandoned and the error wraps ErrAbandoned.
func (m *Manager) settle(ctx context.Context, e *entry, step string, b budget) error {
	m.mu.Lock()
	l, gone, why := e.late, e.abandoned, e.gaveUp
	m.mu.Unlock()
	if gone {
		return fmt.Errorf("%s of %q not run: %w", step, e.name, why)
	}
	if l == nil || !m.stillRunning(e) {
		return nil
	}
	m.log.WarnContext(ctx, "plugin step waits for an earlier step that timed out", "plugin", e.name, "step", step, "waits_for", l.step)
	wctx, cancel := context.WithDeadline(ctx, b.end)
	defer cancel()
	select {
	case err := <-l.done:
		m.collect(e, l, err)
		return nil
	case <-wctx.Done():
	}
	err := fmt.Errorf("%w: %s of %q not run: its %s, which timed out, still runs after %s; restart the agent to recover it",
		ErrAbandoned, step, e.name, l.step, time.Since(l.began).Round(time.Millisecond))
	if m.metrics != nil {
		m.metrics.observeStep(e.name, step, "abandoned", time.Since(b.end.Add(-b.d)))
	}
	m.abandon(ctx, e, step, err)
	return err
}

// stillRunning reports whether e has a late step that has not returned; one
// that has is collected.
func (m *Manager) stillRunning(e *entry) bool {
	m.mu.Lock()
	l := e.late
	m.mu.Unlock()
	if l == nil {
		return false
	}
	select {
	case err := <-l.done:
		m.collect(e, l, err)
		return false
	default:
		return true
	}
}

// declaredServices returns the services p says it provides.
func declaredServices(p Plugin) []string {
	if sp, ok := p.(ServiceProvider); ok {
		return sp.Services()
	}
	return nil
}

// collect records the result of a late step that returned. A late
// Initialize that succeeded owes a Stop; one that failed may have left
// services and collectors behind.
func (m *Manager) collect(e *entry, l *lateStep, err error) {
	m.mu.Lock()
	e.late = nil
	if l.step == "initialize" && err == nil {
		e.initialized = true
	}
	m.mu.Unlock()
	if l.step == "initialize" && err != nil {
		m.container.failOwner(e.name, declaredServices(e.plugin), err)
		m.releaseMetrics(e.name)
	}
	m.log.Info("plugin step returned after its timeout", "plugin", e.name, "step", l.step,
		"took", time.Since(l.began).Round(time.Millisecond), "err", err)
}

// abandon marks e abandoned: failed, with err as the reason, and never
// stepped again.
func (m *Manager) abandon(ctx context.Context, e *entry, step string, err error) {
	m.mu.Lock()
	e.abandoned, e.gaveUp = true, err
	l := e.late
	if l != nil {
		e.stranded = l.step
	}
	m.mu.Unlock()
	if m.metrics != nil {
		m.metrics.abandoned.WithLabelValues(e.name).Set(1)
	}
	m.transition(ctx, e, step, StateFailed, err.Error(), 0)
	if l != nil {
		// Say when, if ever, the abandoned step returns.
		go func() {
			err := <-l.done
			m.mu.Lock()
			e.returned = true
			m.mu.Unlock()
			m.log.Warn("abandoned plugin's step returned", "plugin", e.name, "step", l.step,
				"took", time.Since(l.began).Round(time.Millisecond), "err", err)
		}()
	}
}

// step runs one lifecycle call of one plugin in its own goroutine, bounded
// by b, with panics recovered, inside a span, and records its duration and
// outcome. An earlier step of the plugin that timed out and still runs is
// waited for first, within b (settle); if it does not end, fn is not
// called and the error wraps ErrAbandoned. When fn overruns b, its
// goroutine is recorded as the plugin's late step.
func (m *Manager) step(ctx context.Context, e *entry, step string, b budget, fn func(context.Context) error) (time.Duration, error) {
	ctx, span := m.tracer.Start(ctx, "plugin."+step, trace.WithAttributes(
		attribute.String("vitals.plugin.name", e.name),
		attribute.Int("vitals.plugin.priority", int(e.meta.Priority)),
		attribute.String("vitals.plugin.version", e.meta.Version),
	))
	defer span.End()
	if err := m.settle(ctx, e, step, b); err != nil {
		span.SetAttributes(attribute.String("vitals.plugin.outcome", "abandoned"))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return 0, err
	}
	sctx, cancel := context.WithDeadline(ctx, b.end)
	defer cancel()

	began := time.Now()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		pprof.Do(sctx, pprof.Labels("plugin", e.name, "step", step), func(ctx context.Context) {
			done <- fn(ctx)
		})
	}()
	var err error
	select {
	case err = <-done:
	case <-sctx.Done():
		if ctx.Err() != nil {
			err = fmt.Errorf("%s of %q: %w", step, e.name, context.Cause(ctx))
		} else {
			err = fmt.Errorf("%s of %q %w after %s", step, e.name, ErrStepTimeout, b.d)
		}
		// The goroutine may still run: the next step waits for it.
		m.mu.Lock()
		e.late = &lateStep{step: step, began: began, done: done}
		m.mu.Unlock()
	}
	d := time.Since(began)

	outcome := "success"
	var pe *PanicError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		outcome = "panic"
		m.log.ErrorContext(ctx, "plugin panicked", "plugin", e.name, "step", step, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	case errors.Is(err, ErrStepTimeout):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	span.SetAttributes(attribute.String("vitals.plugin.outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if m.metrics != nil {
		m.metrics.observeStep(e.name, step, outcome, d)
	}
	m.mu.Lock()
	e.timings[step] = d
	m.mu.Unlock()
	return d, err
}

// transition records a new state and tells everyone: the plugin's Base, the
// container's services, the metrics, the events hub and the log.
func (m *Manager) transition(ctx context.Context, e *entry, step string, to State, reason string, d time.Duration) {
	m.mu.Lock()
	from := e.state
	e.state, e.reason, e.since = to, reason, time.Now()
	m.mu.Unlock()
	m.publishState(e, reason)

	ev := Event{Plugin: e.name, Step: step, From: from, To: to, Error: reason, Duration: d, Time: time.Now()}
	m.events.Emit(ev)
	// ctx carries the operation's span (agent.startup, agent.reload ...):
	// the line leads to the trace of the step.
	switch {
	case to == StateFailed:
		m.log.ErrorContext(ctx, "plugin failed", "plugin", e.name, "step", step, "reason", reason)
	case to == StateRunning || to == StateStopped || to == StateDisabled:
		m.log.InfoContext(ctx, "plugin "+string(to), "plugin", e.name, "took", d.Round(time.Microsecond))
	default:
		m.log.DebugContext(ctx, "plugin "+string(to), "plugin", e.name)
	}
}

func (m *Manager) publishState(e *entry, reason string) {
	m.mu.Lock()
	st, p := e.state, e.plugin
	m.mu.Unlock()
	if s, ok := p.(stateSetter); ok {
		s.SetState(st, reason)
	}
	var err error
	if st == StateFailed {
		err = errors.New(reason)
	}
	m.container.setOwnerState(e.name, st, err)
	if m.metrics != nil {
		m.metrics.setState(e.name, st)
		if p != nil {
			m.metrics.setInfo(e.meta)
		}
	}
}

// Stop stops every plugin that initialized, in reverse start order, each
// bounded by the stop timeout, and joins their errors. It is safe to call
// more than once and before Start.
func (m *Manager) Stop(ctx context.Context) error {
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	if m.phase == phaseStopped || m.phase == phaseNew {
		m.phase = phaseStopped
		m.mu.Unlock()
		return nil
	}
	m.phase = phaseStopping
	order := append([]string(nil), m.order...)
	m.mu.Unlock()

	ctx, span := m.tracer.Start(ctx, "agent.shutdown")
	defer span.End()
	stopOrder := slices.Clone(order)
	slices.Reverse(stopOrder)
	m.log.InfoContext(ctx, "stopping plugins", "order", strings.Join(stopOrder, " → "))
	err := m.bringDown(ctx, order)
	if left := m.abandonedPlugins(); len(left) > 0 {
		m.log.ErrorContext(ctx, "plugins left running after shutdown", "plugins", strings.Join(left, ", "))
		err = errors.Join(err, fmt.Errorf("%w: left running: %s", ErrAbandoned, strings.Join(left, ", ")))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.setPhase(phaseStopped)
	m.notifyChanged()
	return err
}

// abandonedPlugins names, sorted, the plugins the host gave up on that may
// still run: the abandoned step runs yet, or it returned but nothing
// stopped the plugin (a Stop that returned late did stop it).
func (m *Manager) abandonedPlugins() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, e := range m.entries {
		switch {
		case !e.abandoned, e.returned && e.stranded == "stop":
		case e.returned:
			out = append(out, fmt.Sprintf("%s (its %s returned late; never stopped)", name, e.stranded))
		default:
			out = append(out, fmt.Sprintf("%s (its %s still runs)", name, e.stranded))
		}
	}
	sort.Strings(out)
	return out
}

// Reload applies a new, already validated config: plugins newly enabled are
// started, newly disabled ones stopped, and changed ones reloaded (or
// stopped and started anew, with their dependents, if they cannot reload).
// A config whose plugins cannot be built or ordered is rejected and nothing
// changes. Failures of single plugins while applying leave them failed and
// are returned joined. A plugin whose Reload fails keeps running its old
// section, and Config records that old section, so the next reload of the
// same file tries again instead of reporting success; so is a plugin that
// failed earlier.
func (m *Manager) Reload(ctx context.Context, cfg *Config) error {
	m.op.Lock()
	defer m.op.Unlock()
	if ph := m.currentPhase(); ph != phaseRunning {
		return errors.New("reload: agent is not running")
	}
	ctx, span := m.tracer.Start(ctx, "agent.reload")
	defer span.End()
	// A reload applies the whole file: a plugin that failed is tried again,
	// so a reload that leaves it failed is not reported as applied.
	retry := map[string]bool{}
	m.mu.Lock()
	for name, e := range m.entries {
		if e.state == StateFailed && cfg.Plugin(name).Enabled {
			retry[name] = true
		}
	}
	m.mu.Unlock()
	err := m.apply(ctx, cfg, retry)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.notifyChanged()
	return err
}

// apply moves the running set to cfg; plugins named in retry are restarted
// even if their config did not change.
func (m *Manager) apply(ctx context.Context, cfg *Config, retry map[string]bool) error {
	newOrder, newDeps, fresh, err := m.build(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errReloadRejected, err)
	}

	m.mu.Lock()
	oldOrder := append([]string(nil), m.order...)
	old := map[string]*entry{}
	for k, v := range m.entries {
		old[k] = v
	}
	m.mu.Unlock()

	// Decide what happens to each plugin.
	var stopping []string        // stop, in reverse old order
	restart := map[string]bool{} // stop now, start again with the new value
	reload := map[string]bool{}  // running, call Reload
	for _, name := range oldOrder {
		o, n := old[name], fresh[name]
		switch {
		case o.abandoned: // never stepped again; reported below
		case n.plugin == nil: // disabled now
			stopping = append(stopping, name)
		case !o.pc.Section.Equal(n.pc.Section) && o.state == StateRunning:
			if _, ok := o.plugin.(Reloader); ok {
				reload[name] = true
			} else {
				restart[name] = true
			}
		case o.state == StateFailed && (retry[name] || !o.pc.Section.Equal(n.pc.Section) || o.pc.Required != n.pc.Required):
			restart[name] = true
		}
	}
	// Whoever needs a restarted plugin is restarted too: it holds the old
	// plugin's services.
	for grew := true; grew; {
		grew = false
		for _, name := range newOrder {
			if restart[name] || old[name] == nil || old[name].plugin == nil {
				continue
			}
			for _, d := range newDeps[name] {
				if restart[d] {
					restart[name], grew = true, true
					delete(reload, name)
				}
			}
		}
	}

	var errs []error
	for i := len(oldOrder) - 1; i >= 0; i-- {
		name := oldOrder[i]
		if !restart[name] && !slices.Contains(stopping, name) {
			continue
		}
		if err := m.stop(ctx, old[name]); err != nil {
			errs = append(errs, err)
		}
		if slices.Contains(stopping, name) {
			m.container.Remove(name)
			m.transition(ctx, old[name], "disable", StateDisabled, "", 0)
		}
	}

	// Swap in the new entries: kept plugins keep their values and state.
	// An abandoned plugin keeps its entry, so nothing is built beside it.
	m.mu.Lock()
	for name, n := range fresh {
		o := old[name]
		if o != nil && o.abandoned {
			o.pc = n.pc
			if n.plugin != nil && !restart[name] { // a restart's stop said so
				errs = append(errs, fmt.Errorf("plugin %q: %w", name, o.gaveUp))
			}
			continue
		}
		keep := o != nil && o.plugin != nil && n.plugin != nil && !restart[name] && (o.state == StateRunning || o.state == StateFailed)
		if keep {
			if reload[name] {
				// The plugin runs its old section until Reload succeeds;
				// only the switches take effect now.
				o.pc.Enabled, o.pc.Required = n.pc.Enabled, n.pc.Required
			} else {
				o.pc = n.pc
			}
			continue
		}
		if o != nil && o.plugin == nil && n.plugin == nil {
			o.pc = n.pc
			continue
		}
		m.entries[name] = n
	}
	// The recorded config is what each plugin runs: a plugin that is
	// still to reload keeps its old section until Reload succeeds, so a
	// failed Reload is tried again by the next reload of the same file.
	applied := cfg.clone()
	for name := range reload {
		applied.Core.APIGateway.Plugins[name] = old[name].pc
	}
	m.cfg, m.order, m.deps = applied, newOrder, newDeps
	m.mu.Unlock()
	for name := range fresh {
		m.publishState(m.entry(name), "")
	}

	for _, name := range newOrder {
		if !reload[name] {
			continue
		}
		e := m.entry(name)
		r := e.plugin.(Reloader)
		pc := fresh[name].pc
		d, err := m.step(ctx, e, "reload", newBudget(m.stepTimeout()), func(ctx context.Context) error { return r.Reload(ctx, pc.Section) })
		if err != nil {
			errs = append(errs, fmt.Errorf("reload %q: %w", name, err))
			m.log.ErrorContext(ctx, "plugin reload failed; it keeps its old config", "plugin", name, "err", err)
			continue
		}
		m.mu.Lock()
		e.pc = pc
		next := m.cfg.clone() // copy on write: Config's callers hold the old one
		next.Core.APIGateway.Plugins[name] = pc
		m.cfg = next
		m.mu.Unlock()
		m.events.Emit(Event{Plugin: name, Step: "reload", From: StateRunning, To: StateRunning, Duration: d, Time: time.Now()})
		m.log.InfoContext(ctx, "plugin reloaded", "plugin", name)
	}

	// Bring up everything new or restarted, in the new order.
	var up []string
	for _, name := range newOrder {
		if m.stateOf(m.entry(name)) == StateRegistered {
			up = append(up, name)
		}
	}
	if len(up) > 0 {
		if err := m.bringUp(ctx, up); err != nil {
			errs = append(errs, err)
		}
		for _, name := range up {
			if st := m.stateOf(m.entry(name)); st == StateFailed {
				errs = append(errs, fmt.Errorf("plugin %q failed: %s", name, m.entry(name).reason))
			}
		}
	}
	return errors.Join(errs...)
}

// Enable switches a plugin on, as a reload of the current config with the
// plugin enabled.
func (m *Manager) Enable(ctx context.Context, name string) error {
	return m.toggle(ctx, name, true)
}

// Disable switches a plugin off. Disabling a plugin that enabled plugins
// depend on is refused with ErrConflict.
func (m *Manager) Disable(ctx context.Context, name string) error {
	return m.toggle(ctx, name, false)
}

func (m *Manager) toggle(ctx context.Context, name string, on bool) error {
	if !m.reg.Has(name) {
		return fmt.Errorf("%w %q", ErrUnknownPlugin, name)
	}
	m.op.Lock()
	defer m.op.Unlock()
	if ph := m.currentPhase(); ph != phaseRunning {
		return errors.New("agent is not running")
	}
	m.mu.Lock()
	cfg := m.cfg.clone()
	failed := m.entries[name].state == StateFailed
	var dependents []string
	if !on {
		for other, deps := range m.deps {
			if slices.Contains(deps, name) {
				dependents = append(dependents, other)
			}
		}
	}
	m.mu.Unlock()
	if len(dependents) > 0 {
		sort.Strings(dependents)
		return fmt.Errorf("%w: %s is needed by %s", ErrConflict, name, strings.Join(dependents, ", "))
	}
	pc := cfg.Plugin(name)
	if pc.Enabled == on && !(on && failed) {
		return nil
	}
	pc.Enabled = on
	cfg.Core.APIGateway.Plugins[name] = pc

	verb := map[bool]string{true: "agent.enable", false: "agent.disable"}[on]
	ctx, span := m.tracer.Start(ctx, verb, trace.WithAttributes(attribute.String("vitals.plugin.name", name)))
	defer span.End()
	// Enabling a failed plugin retries it.
	err := m.apply(ctx, cfg, map[string]bool{name: on && failed})
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.notifyChanged()
	return err
}

func (c *Config) clone() *Config {
	out := *c
	out.Core.APIGateway.Plugins = make(map[string]PluginConfig, len(c.Core.APIGateway.Plugins))
	for k, v := range c.Core.APIGateway.Plugins {
		out.Core.APIGateway.Plugins[k] = v
	}
	return &out
}

// PluginStatus is what the admin API shows of a plugin.
type PluginStatus struct {
	Name         string             `json:"name"`
	Version      string             `json:"version,omitempty"`
	Description  string             `json:"description,omitempty"`
	Priority     Priority           `json:"priority"`
	Dependencies []string           `json:"dependencies,omitempty"`
	Enabled      bool               `json:"enabled"`
	Required     bool               `json:"required"`
	State        State              `json:"state"`
	Since        time.Time          `json:"since"`
	LastError    string             `json:"last_error,omitempty"`
	Timings      map[string]Seconds `json:"timings_seconds,omitempty"`
	// Abandoned is set when the host gave up on a step that timed out and
	// still runs: the plugin (state failed) is never stepped again.
	Abandoned bool    `json:"abandoned,omitempty"`
	Health    *Health `json:"health,omitempty"`
}

// Seconds is a duration shown in seconds.
type Seconds float64

// Plugins returns the status of every registered plugin, in start order
// first, then the disabled ones by name.
func (m *Manager) Plugins() []PluginStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PluginStatus, 0, len(m.entries))
	seen := map[string]bool{}
	for _, name := range m.order {
		out = append(out, m.statusLocked(m.entries[name]))
		seen[name] = true
	}
	var rest []string
	for name := range m.entries {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		out = append(out, m.statusLocked(m.entries[name]))
	}
	return out
}

// Plugin returns one plugin's status, with its health report when it
// implements HealthChecker.
func (m *Manager) Plugin(ctx context.Context, name string) (PluginStatus, bool) {
	m.mu.Lock()
	e, ok := m.entries[name]
	if !ok {
		m.mu.Unlock()
		return PluginStatus{}, false
	}
	st := m.statusLocked(e)
	p := e.plugin
	m.mu.Unlock()
	if st.Abandoned {
		// It may be wedged; its own report is not asked for.
		st.Health = &Health{Status: HealthFailing, Message: st.LastError, Checked: time.Now()}
		return st, true
	}
	if hc, ok := p.(HealthChecker); ok {
		cctx, cancel := context.WithTimeout(ctx, m.stepTimeout())
		h := hc.HealthCheck(cctx)
		cancel()
		st.Health = &h
	}
	return st, true
}

func (m *Manager) statusLocked(e *entry) PluginStatus {
	st := PluginStatus{
		Name: e.name, Enabled: e.pc.Enabled, Required: e.pc.Required,
		State: e.state, Since: e.since, LastError: e.reason,
		Version: e.meta.Version, Description: e.meta.Description, Priority: e.meta.Priority,
		Dependencies: e.meta.Dependencies, Abandoned: e.abandoned,
	}
	if len(e.timings) > 0 {
		st.Timings = map[string]Seconds{}
		for k, v := range e.timings {
			st.Timings[k] = Seconds(v.Seconds())
		}
	}
	return st
}

// Ready reports whether the agent is ready under the config's readiness
// policy, and every running ReadinessChecker agrees, with the reasons when
// it is not.
func (m *Manager) Ready() error {
	var bad []string
	for _, c := range m.Readiness() {
		if c.Err != nil && !c.Ignored {
			bad = append(bad, c.Name+": "+c.Err.Error())
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// ReadinessCheck is one verdict behind the agent's readiness.
type ReadinessCheck struct {
	// Name is "lifecycle" or "plugin:<name>".
	Name string
	// Err is why the check is not ready; nil when it is.
	Err error
	// Ignored is set for a failed optional plugin under readiness
	// "required": it is reported, but does not make the agent unready.
	Ignored bool
}

// Readiness returns the agent's lifecycle phase while it is not running,
// else one check per enabled plugin in start order: running (and its
// ReadinessChecker agreeing), or why not.
func (m *Manager) Readiness() []ReadinessCheck {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.phase {
	case phaseNew, phaseStarting:
		return []ReadinessCheck{{Name: "lifecycle", Err: errors.New("the agent is starting")}}
	case phaseStopping, phaseStopped:
		return []ReadinessCheck{{Name: "lifecycle", Err: errors.New("the agent is shutting down")}}
	}
	out := make([]ReadinessCheck, 0, len(m.order))
	for _, name := range m.order {
		e := m.entries[name]
		c := ReadinessCheck{Name: "plugin:" + name}
		switch {
		case e.state == StateRunning:
			if rc, ok := e.plugin.(ReadinessChecker); ok {
				c.Err = rc.Ready()
			}
		case e.state == StateFailed:
			c.Err = fmt.Errorf("failed: %s", e.reason)
			c.Ignored = !e.pc.Required && m.cfg.Core.Lifecycle.Readiness == ReadinessRequired
		default:
			c.Err = fmt.Errorf("%s", e.state)
		}
		out = append(out, c)
	}
	return out
}

// Order returns the current start order of the enabled plugins.
func (m *Manager) Order() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.order...)
}

// RunningPlugins returns the plugin values that are running, in start order.
func (m *Manager) RunningPlugins() []Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Plugin
	for _, name := range m.order {
		if e := m.entries[name]; e.state == StateRunning {
			out = append(out, e.plugin)
		}
	}
	return out
}

func (m *Manager) entry(name string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries[name]
}

func (m *Manager) stateOf(e *entry) State {
	if e == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.state
}

func (m *Manager) setPhase(p phase) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phase = p
}

func (m *Manager) currentPhase() phase {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.phase
}

func (m *Manager) stepTimeout() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Core.Lifecycle.StepTimeout.D()
}

func (m *Manager) stopTimeout() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Core.Lifecycle.StopTimeout.D()
}

// State returns a plugin's state and the reason it failed or was skipped.
func (m *Manager) State(name string) (State, string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		if m.reg.Has(name) {
			return StateRegistered, "", true
		}
		return "", "", false
	}
	return e.state, e.reason, true
}
