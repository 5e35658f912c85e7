package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Names of the services the host itself puts in every container.
const (
	// ServiceMetrics is a prometheus.Registerer for the agent's /metrics.
	// Each plugin gets its own: what a plugin registers is unregistered
	// by the host when the plugin stops or fails to initialize.
	ServiceMetrics = "metrics_registry"
	// ServiceTracerProvider is the agent's trace.TracerProvider.
	ServiceTracerProvider = "tracer_provider"
	// ServiceEvents is the *Events hub of plugin lifecycle events.
	ServiceEvents = "lifecycle_events"
	// ServicePlugins is a PluginDirectory of the host's plugins.
	ServicePlugins = "plugin_directory"
)

// PluginDirectory lets a plugin see the others, for plugins that watch
// plugins (the ExtManager finds in-process AI plugins with it). Pair it with
// the events hub to learn when the answer changes.
type PluginDirectory interface {
	// RunningPlugins returns the running plugins in start order.
	RunningPlugins() []Plugin
	// Plugins returns the status of every registered plugin, enabled or
	// not, in start order first.
	Plugins() []PluginStatus
}

// ErrServiceNotFound is returned when no service has the requested name.
var ErrServiceNotFound = errors.New("service not registered")

// ErrServiceCycle is returned when lazy services depend on each other in a
// cycle.
var ErrServiceCycle = errors.New("service dependency cycle")

// FactoryFunc builds a lazy service on its first lookup. Its dependencies
// are resolved first and are available from c.
type FactoryFunc func(ctx context.Context, c *Container) (any, error)

// Container holds the agent's named services. Plugins read services in
// Initialize with Require and register the ones they provide with Provide
// or ProvideFactory. A Container handed to a plugin is scoped to it: errors
// name the plugin that asked, and services it registers are owned by it and
// follow its lifecycle state.
//
// Its methods are safe for concurrent use.
type Container struct {
	core  *containerCore
	owner string // plugin this view is scoped to; "" for the host
}

type containerCore struct {
	mu       sync.Mutex
	services map[string]*service
	log      *slog.Logger
}

type service struct {
	name    string
	owner   string
	value   any
	built   bool
	factory FactoryFunc
	deps    []string
	state   State
	err     error
}

// NewContainer returns an empty container. log may be nil.
func NewContainer(log *slog.Logger) *Container {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Container{core: &containerCore{services: map[string]*service{}, log: log}}
}

// For returns a view of the container scoped to the named plugin.
func (c *Container) For(plugin string) *Container {
	return &Container{core: c.core, owner: plugin}
}

// Owner returns the plugin this view is scoped to, or "" for the host.
func (c *Container) Owner() string { return c.owner }

// Logger returns the agent's logger, with a plugin attribute in a scoped view.
func (c *Container) Logger() *slog.Logger {
	if c.owner == "" {
		return c.core.log
	}
	return c.core.log.With("plugin", c.owner)
}

func (c *Container) who() string {
	if c.owner == "" {
		return "host"
	}
	return fmt.Sprintf("plugin %q", c.owner)
}

// Provide registers a ready service value. A name that is invalid or already
// registered by another owner is an error; the owner may replace its own
// service (a plugin initialized again after a reload).
func (c *Container) Provide(name string, value any) error {
	if value == nil {
		return fmt.Errorf("%s: provide service %q: nil value", c.who(), name)
	}
	return c.add(&service{name: name, value: value, built: true})
}

// ProvideFactory registers a lazy service built by f on its first lookup,
// after the services named in deps.
func (c *Container) ProvideFactory(name string, deps []string, f FactoryFunc) error {
	if f == nil {
		return fmt.Errorf("%s: provide service %q: nil factory", c.who(), name)
	}
	return c.add(&service{name: name, factory: f, deps: append([]string(nil), deps...)})
}

func (c *Container) add(s *service) error {
	if !ValidName(s.name) {
		return fmt.Errorf("%s: provide service %q: invalid name, want %s", c.who(), s.name, nameRE)
	}
	s.owner = c.owner
	s.state = StateRegistered
	if s.owner == "" {
		s.state = StateRunning
	}
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	if old, ok := c.core.services[s.name]; ok && old.owner != s.owner {
		owner := "the host"
		if old.owner != "" {
			owner = fmt.Sprintf("plugin %q", old.owner)
		}
		return fmt.Errorf("%s: provide service %q: already provided by %s", c.who(), s.name, owner)
	}
	if s.owner != "" {
		// A plugin's service starts in the state its owner is in.
		for _, o := range c.core.services {
			if o.owner == s.owner && o.name != s.name {
				s.state = o.state
				break
			}
		}
	}
	c.core.services[s.name] = s
	return nil
}

// Remove drops every service owned by plugin.
func (c *Container) Remove(plugin string) {
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	for name, s := range c.core.services {
		if s.owner == plugin {
			delete(c.core.services, name)
		}
	}
}

// failOwner drops every service plugin owns and puts a failed entry under
// each name it declares (ServiceProvider), so that a lookup says the
// service failed and why instead of that it does not exist: a plugin that
// uses a service only when one is configured must not mistake a provider
// that failed to initialize for none.
func (c *Container) failOwner(plugin string, declared []string, err error) {
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	for name, s := range c.core.services {
		if s.owner == plugin {
			delete(c.core.services, name)
		}
	}
	for _, name := range declared {
		if _, taken := c.core.services[name]; !taken {
			c.core.services[name] = &service{name: name, owner: plugin, state: StateFailed, err: err}
		}
	}
}

// setOwnerState records the lifecycle state of every service a plugin owns.
func (c *Container) setOwnerState(plugin string, st State, err error) {
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	for _, s := range c.core.services {
		if s.owner == plugin {
			s.state, s.err = st, err
		}
	}
}

// Get returns the named service, building it first if it is lazy. A host
// service that hands each plugin its own value (the metrics registry)
// returns the asking plugin's.
func (c *Container) Get(ctx context.Context, name string) (any, error) {
	v, err := c.resolve(ctx, name, nil)
	if err != nil {
		return nil, fmt.Errorf("%s requires service %q: %w", c.who(), name, err)
	}
	if sc, ok := v.(scopedService); ok && c.owner != "" {
		v = sc.forPlugin(c.owner)
	}
	return v, nil
}

func (c *Container) resolve(ctx context.Context, name string, stack []string) (any, error) {
	for i, n := range stack {
		if n == name {
			cycle := append(append([]string(nil), stack[i:]...), name)
			return nil, fmt.Errorf("%w: %s", ErrServiceCycle, strings.Join(cycle, " → "))
		}
	}
	c.core.mu.Lock()
	s, ok := c.core.services[name]
	if !ok {
		c.core.mu.Unlock()
		return nil, ErrServiceNotFound
	}
	if s.state == StateFailed || s.state == StateDisabled || s.state == StateStopped {
		st, serr := s.state, s.err
		c.core.mu.Unlock()
		if st == StateFailed && serr != nil {
			return nil, fmt.Errorf("service is %s: plugin %q: %w", st, s.owner, serr)
		}
		return nil, fmt.Errorf("service is %s", st)
	}
	if s.built {
		v := s.value
		c.core.mu.Unlock()
		return v, nil
	}
	deps, f := s.deps, s.factory
	c.core.mu.Unlock()

	stack = append(stack, name)
	for _, d := range deps {
		if _, err := c.resolve(ctx, d, stack); err != nil {
			if errors.Is(err, ErrServiceCycle) {
				return nil, err
			}
			return nil, fmt.Errorf("dependency %q: %w", d, err)
		}
	}
	v, err := f(ctx, c)
	if err == nil && v == nil {
		err = errors.New("factory returned nil")
	}
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	if err != nil {
		s.err = err
		return nil, fmt.Errorf("build: %w", err)
	}
	if !s.built { // another caller may have built it meanwhile; keep the first
		s.value, s.built = v, true
	}
	return s.value, nil
}

// Require returns the named service as a T. The error says who asked, for
// what and why it could not be had.
func Require[T any](ctx context.Context, c *Container, name string) (T, error) {
	var zero T
	v, err := c.Get(ctx, name)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%s requires service %q as %T: it is %T", c.who(), name, zero, v)
	}
	return t, nil
}

// ServiceInfo is one service's entry in a container report.
type ServiceInfo struct {
	Name   string  `json:"name"`
	Owner  string  `json:"owner,omitempty"`
	State  State   `json:"state"`
	Lazy   bool    `json:"lazy,omitempty"`
	Built  bool    `json:"built"`
	Error  string  `json:"error,omitempty"`
	Health *Health `json:"health,omitempty"`
}

// HealthReport is the container-wide health: every service, and the worst
// status among them.
type HealthReport struct {
	Status   HealthStatus  `json:"status"`
	Services []ServiceInfo `json:"services"`
}

// Health checks every service. A built service that implements
// HealthChecker is asked, bounded by timeout; the others are judged by their
// state. The report is sorted by name.
func (c *Container) Health(ctx context.Context, timeout time.Duration) HealthReport {
	c.core.mu.Lock()
	list := make([]*service, 0, len(c.core.services))
	infos := make([]ServiceInfo, 0, len(c.core.services))
	for _, s := range c.core.services {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	values := make([]any, len(list))
	for i, s := range list {
		info := ServiceInfo{Name: s.name, Owner: s.owner, State: s.state, Lazy: s.factory != nil, Built: s.built}
		if s.err != nil {
			info.Error = s.err.Error()
		}
		infos = append(infos, info)
		values[i] = s.value
	}
	c.core.mu.Unlock()

	rep := HealthReport{Status: HealthOK, Services: infos}
	for i := range infos {
		var h Health
		hc, ok := values[i].(HealthChecker)
		switch {
		case infos[i].State == StateFailed:
			h = Health{Status: HealthFailing, Message: infos[i].Error}
		case infos[i].State != StateRunning && infos[i].State != StateInitialized && infos[i].State != StateStarting:
			h = Health{Status: HealthDegraded, Message: "service is " + string(infos[i].State)}
		case ok:
			cctx, cancel := context.WithTimeout(ctx, timeout)
			h = hc.HealthCheck(cctx)
			cancel()
		default:
			h = Health{Status: HealthOK}
		}
		if h.Checked.IsZero() {
			h.Checked = time.Now()
		}
		infos[i].Health = &h
		rep.Status = worse(rep.Status, h.Status)
	}
	return rep
}

func worse(a, b HealthStatus) HealthStatus {
	rank := map[HealthStatus]int{HealthOK: 0, HealthDegraded: 1, HealthFailing: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// hostServiceNames returns the services the host provided, which plugins
// may always depend on.
func (c *Container) hostServiceNames() []string {
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	var out []string
	for name, s := range c.core.services {
		if s.owner == "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
