package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// ServicePlugins names the PluginDirectory of the host's plugins, the one
// service the host itself puts in the container.
const ServicePlugins = "plugin_directory"

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

// Container holds the agent's named services. It is the host's: a plugin
// reaches it only through its Host, whose Get and Provide use a view of the
// container scoped to the plugin, so that errors name the plugin that asked
// and the services it registers are owned by it and follow its lifecycle
// state.
//
// Its methods are safe for concurrent use.
type Container struct {
	core  *containerCore
	owner string // plugin this view is scoped to; "" for the host
}

type containerCore struct {
	mu       sync.Mutex
	services map[string]*service
}

type service struct {
	name  string
	owner string
	value any // nil for the placeholder of a failed provider (failOwner)
	state State
	err   error
}

// NewContainer returns an empty container.
func NewContainer() *Container {
	return &Container{core: &containerCore{services: map[string]*service{}}}
}

// scoped returns a view of the container scoped to the named plugin.
func (c *Container) scoped(plugin string) *Container {
	return &Container{core: c.core, owner: plugin}
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
	return c.add(&service{name: name, value: value})
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

// remove drops every service owned by plugin.
func (c *Container) remove(plugin string) {
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

// Get returns the named service.
func (c *Container) Get(_ context.Context, name string) (any, error) {
	c.core.mu.Lock()
	var s service
	p, ok := c.core.services[name]
	if ok {
		s = *p
	}
	c.core.mu.Unlock()
	var err error
	switch {
	case !ok:
		err = ErrServiceNotFound
	case s.state == StateFailed && s.err != nil:
		err = fmt.Errorf("service is %s: plugin %q: %w", s.state, s.owner, s.err)
	case s.state == StateFailed || s.state == StateDisabled || s.state == StateStopped:
		err = fmt.Errorf("service is %s", s.state)
	default:
		return s.value, nil
	}
	return nil, fmt.Errorf("%s requires service %q: %w", c.who(), name, err)
}

// ServiceInfo is one service's entry in a container report.
type ServiceInfo struct {
	Name   string  `json:"name"`
	Owner  string  `json:"owner,omitempty"`
	State  State   `json:"state"`
	Error  string  `json:"error,omitempty"`
	Health *Health `json:"health,omitempty"`
}

// HealthReport is the container-wide health: every service, and the worst
// status among them.
type HealthReport struct {
	Status   HealthStatus  `json:"status"`
	Services []ServiceInfo `json:"services"`
}

// Health checks every service. A service that implements
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
		info := ServiceInfo{Name: s.name, Owner: s.owner, State: s.state}
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
