package agent

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Host is what a plugin sees of the agent. The host hands each plugin its
// own in Initialize; the plugin may keep it and use it until its Stop
// returns. Everything a Host gives is scoped to its plugin: the services it
// provides are owned by it and follow its lifecycle, its metrics are
// dropped by the host when it stops, its goroutines are ended by the host
// when it stops, and it cannot reach another plugin's scope.
//
// Its methods are safe for concurrent use.
type Host interface {
	// Name is the plugin's name.
	Name() string
	// Logger is the agent's logger with a plugin attribute.
	Logger() *slog.Logger
	// Section is the plugin's config section: the one it was built from,
	// or the one its last successful Reload applied. Read secrets with
	// Section().Secrets() and resolve relative paths with
	// Section().Resolve.
	Section() Section

	// Get returns a service another plugin or the host provides (use
	// Require for a typed one). A service whose plugin failed, stopped or
	// is disabled is an error that says so.
	Get(ctx context.Context, name string) (any, error)
	// Provide registers a service the plugin owns (see ServiceProvider).
	// A name another plugin or the host provides is an error; the plugin
	// may replace its own.
	Provide(name string, value any) error

	// Metrics is the plugin's view of the agent's /metrics registry. The
	// host unregisters what the plugin registered after its Stop and after
	// a failed Initialize, so a plugin never unregisters its own.
	Metrics() prometheus.Registerer
	// TracerProvider is the agent's; a no-op one when tracing is off.
	TracerProvider() trace.TracerProvider
	// SubscribeEvents calls fn for every later lifecycle event of any
	// plugin, on the goroutine that made the transition, so fn must be
	// quick and must not call back into the lifecycle (see Events). The
	// host ends the subscription when the plugin's Stop returns; calling
	// the returned function ends it earlier.
	SubscribeEvents(fn func(Event)) (unsubscribe func())

	// Go runs fn in a goroutine the host owns. Its ctx is cancelled when
	// the host begins to stop the plugin (before Stop is called, and after
	// a failed Initialize), and the host waits for every such goroutine
	// after Stop returns, within stop_timeout: a plugin whose goroutines
	// have not returned by then is abandoned like a step that overran its
	// bound. A plugin therefore keeps no cancel, WaitGroup or stopped flag
	// of its own for them. fn must return soon after ctx is done. Go after
	// the stop began runs nothing.
	Go(fn func(ctx context.Context))
	// Context is the ctx the functions given to Go get: cancelled when
	// the host begins to stop the plugin. Start uses it for what it begins
	// that must end then (a subscription, a watch it hands to Go); it is
	// not for bounding a step.
	Context() context.Context
}

// ServiceGetter is what Require reads from: a plugin's Host, or the host's
// own Container.
type ServiceGetter interface {
	Get(ctx context.Context, name string) (any, error)
}

// Require returns the named service as a T. The error says who asked, for
// what and why it could not be had.
func Require[T any](ctx context.Context, s ServiceGetter, name string) (T, error) {
	var zero T
	v, err := s.Get(ctx, name)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		who := "host"
		if h, ok := s.(interface{ Name() string }); ok {
			who = fmt.Sprintf("plugin %q", h.Name())
		}
		return zero, fmt.Errorf("%s requires service %q as %T: it is %T", who, name, zero, v)
	}
	return t, nil
}

// HostOptions are the parts of a PluginHost. The Manager builds one per
// plugin instance; tests and tools that run a plugin by hand (see
// agenttest.NewHost) give their own.
type HostOptions struct {
	// Container holds the services; nil means a new, empty one.
	Container *Container
	// Logger is the agent's logger; nil discards.
	Logger *slog.Logger
	// Section is the plugin's config section.
	Section Section
	// Metrics is the agent's registry, of which the plugin gets a view
	// that Close empties; nil means a private registry.
	Metrics prometheus.Registerer
	// TracerProvider; nil means a no-op one.
	TracerProvider trace.TracerProvider
	// Events is the lifecycle events hub; nil means a private one.
	Events *Events
}

// PluginHost is the Host of one plugin instance. The Manager makes one per
// plugin it initializes and ends it when it stops the plugin (Cancel, the
// plugin's Stop, then Close); whoever runs a plugin by hand does the same.
type PluginHost struct {
	name    string
	c       *Container
	log     *slog.Logger
	metrics *pluginRegisterer
	tp      trace.TracerProvider
	events  *Events

	mu      sync.Mutex
	section Section
	unsubs  []func()
	ctx     context.Context
	cancel  context.CancelFunc
	running int
	idle    chan struct{} // closed while running == 0; replaced on the next Go
}

// NewHost returns the Host of the named plugin.
func NewHost(name string, o HostOptions) *PluginHost {
	if o.Container == nil {
		o.Container = NewContainer()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	if o.Events == nil {
		o.Events = NewEvents()
	}
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &PluginHost{
		name: name, c: o.Container.scoped(name), log: o.Logger.With("plugin", name),
		metrics: &pluginRegisterer{parent: o.Metrics}, tp: o.TracerProvider, events: o.Events,
		section: o.Section, ctx: ctx, cancel: cancel, idle: idle,
	}
}

// Name implements Host.
func (h *PluginHost) Name() string { return h.name }

// Logger implements Host.
func (h *PluginHost) Logger() *slog.Logger { return h.log }

// Section implements Host.
func (h *PluginHost) Section() Section {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.section
}

func (h *PluginHost) setSection(s Section) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.section = s
}

// Get implements Host.
func (h *PluginHost) Get(ctx context.Context, name string) (any, error) { return h.c.Get(ctx, name) }

// Provide implements Host.
func (h *PluginHost) Provide(name string, value any) error { return h.c.Provide(name, value) }

// Metrics implements Host.
func (h *PluginHost) Metrics() prometheus.Registerer { return h.metrics }

// TracerProvider implements Host.
func (h *PluginHost) TracerProvider() trace.TracerProvider { return h.tp }

// SubscribeEvents implements Host.
func (h *PluginHost) SubscribeEvents(fn func(Event)) func() {
	unsub := h.events.Subscribe(fn)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		unsub() // the plugin is stopping: no new subscriptions
		return func() {}
	}
	h.unsubs = append(h.unsubs, unsub)
	return unsub
}

// Context implements Host.
func (h *PluginHost) Context() context.Context { return h.ctx }

// Go implements Host.
func (h *PluginHost) Go(fn func(ctx context.Context)) {
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		return
	}
	if h.running == 0 {
		h.idle = make(chan struct{})
	}
	h.running++
	ctx := h.ctx
	h.mu.Unlock()
	go func() {
		defer h.done()
		pprof.Do(ctx, pprof.Labels("plugin", h.name), fn)
	}()
}

func (h *PluginHost) done() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running--
	if h.running == 0 {
		close(h.idle)
	}
}

// Cancel begins the stop: it cancels the ctx of every goroutine started
// with Go and makes later calls to Go run nothing. Safe to call twice.
func (h *PluginHost) Cancel() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancel()
}

// Close ends the host after the plugin's Stop returned (or its Initialize
// failed): it cancels (see Cancel), ends the plugin's event subscriptions,
// waits until every goroutine started with Go has returned or ctx is done,
// and unregisters the metric collectors the plugin registered. When ctx
// ends first, the error says how many goroutines still run. Safe to call
// twice.
func (h *PluginHost) Close(ctx context.Context) error {
	h.Cancel()
	h.unsubscribe()
	defer h.metrics.release()
	for {
		h.mu.Lock()
		idle, n := h.idle, h.running
		h.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			h.mu.Lock()
			n = h.running
			h.mu.Unlock()
			if n == 0 {
				return nil
			}
			return fmt.Errorf("%d goroutine(s) of plugin %q still run: %w", n, h.name, context.Cause(ctx))
		}
	}
}

// unsubscribe ends the plugin's event subscriptions.
func (h *PluginHost) unsubscribe() {
	h.mu.Lock()
	unsubs := h.unsubs
	h.unsubs = nil
	h.mu.Unlock()
	for _, u := range unsubs {
		u()
	}
}

// idleChan returns a channel closed once no goroutine of the group runs.
func (h *PluginHost) idleChan() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.idle
}

var _ Host = (*PluginHost)(nil)
