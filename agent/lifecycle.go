package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// Registerer is the agent's /metrics registry: each plugin registers
	// its collectors in a view of it (Host.Metrics) that the host empties
	// when the plugin stops. nil means a private registry nobody scrapes.
	Registerer prometheus.Registerer
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
	tp        trace.TracerProvider
	container *Container
	// registerer is the agent's /metrics registry; each plugin's Host
	// has a view of it.
	registerer prometheus.Registerer

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
	reason      string      // why failed, or why skipped
	initialized bool        // Initialize returned nil, so Stop is owed
	host        *PluginHost // the Host of the running instance; nil before Initialize
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

// NewManager returns a manager whose container holds the host's one
// service, the plugin directory.
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
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	m := &Manager{
		reg:        o.Registry,
		log:        o.Logger,
		tracer:     o.TracerProvider.Tracer("github.com/vitals-dev/vitals/agent"),
		tp:         o.TracerProvider,
		metrics:    o.Metrics,
		events:     NewEvents(),
		container:  NewContainer(),
		registerer: o.Registerer,
		entries:    map[string]*entry{},
		cfg:        DefaultConfig(),
	}
	_ = m.container.Provide(ServicePlugins, PluginDirectory(m))
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
	// The host's services (hostServices).
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
		case !e.abandoned, e.returned && (e.stranded == "stop" || e.stranded == strandedGoroutines):
		case e.stranded == strandedGoroutines:
			out = append(out, fmt.Sprintf("%s (goroutines it started still run)", name))
		case e.returned:
			out = append(out, fmt.Sprintf("%s (its %s returned late; never stopped)", name, e.stranded))
		default:
			out = append(out, fmt.Sprintf("%s (its %s still runs)", name, e.stranded))
		}
	}
	sort.Strings(out)
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
