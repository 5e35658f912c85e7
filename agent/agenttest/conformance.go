package agenttest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
)

// bound is how long a step of a plugin under test may take, as the host's
// default step_timeout.
const bound = 15 * time.Second

// NewContainer returns a container holding the host's services as the
// lifecycle manager provides them: a plugin directory with no plugins.
func NewContainer(t testing.TB) *agent.Container {
	t.Helper()
	c := agent.NewContainer()
	if err := c.Provide(agent.ServicePlugins, agent.PluginDirectory(noPlugins{})); err != nil {
		t.Fatal(err)
	}
	return c
}

// NewHost returns the Host of the named plugin, as the lifecycle manager
// builds it, from o: a nil Container is NewContainer's, a nil Metrics a
// fresh registry. When the test ends, the host is closed: it cancels the
// goroutines the plugin started with Go, fails the test if they have not
// returned within 15 s, and unregisters the plugin's metrics. Stop the
// plugin with Stop, which ends the host as the manager does.
func NewHost(t testing.TB, name string, o agent.HostOptions) *agent.PluginHost {
	t.Helper()
	if o.Container == nil {
		o.Container = NewContainer(t)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	h := agent.NewHost(name, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("after the test: %v", err)
		}
	})
	return h
}

// Stop stops p as the lifecycle manager does: it cancels the goroutines of
// its Host h, calls Stop, then closes h (waiting for the goroutines,
// bounded by ctx, and dropping the plugin's metrics). An error says what
// Stop returned and which goroutines did not end.
func Stop(ctx context.Context, h *agent.PluginHost, p agent.Plugin) error {
	h.Cancel()
	err := p.Stop(ctx)
	return errors.Join(err, h.Close(ctx))
}

// Conformance runs the plugin contract against plugins built by newPlugin:
// Initialize → Start → Stop, Stop twice, Stop without Start, and Stop
// without Initialize's successor steps, each step within bound. After each
// Stop, the goroutines the plugin started with its Host's Go must have
// returned, and the plugin must not have unregistered a metric (the host
// does). setup, if not nil, fills the container with the services the
// plugin needs.
func Conformance(t *testing.T, newPlugin func(t *testing.T) agent.Plugin, setup func(t *testing.T, c *agent.Container)) {
	t.Helper()
	step := func(t *testing.T, name string, fn func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- fn(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(bound + time.Second):
			t.Fatalf("%s did not return within %s", name, bound)
		}
	}
	type rig struct {
		c   *agent.Container
		h   *agent.PluginHost
		reg *countingRegisterer
	}
	newRig := func(t *testing.T, p agent.Plugin) rig {
		c := NewContainer(t)
		if setup != nil {
			setup(t, c)
		}
		reg := &countingRegisterer{Registerer: prometheus.NewRegistry()}
		return rig{c: c, reg: reg, h: NewHost(t, p.Metadata().Name, agent.HostOptions{Container: c, Metrics: reg})}
	}
	// stop runs Stop as the host does, then checks what it left behind.
	stop := func(t *testing.T, r rig, p agent.Plugin, name string) {
		t.Helper()
		r.h.Cancel()
		before := r.reg.unregistered.Load()
		step(t, name, p.Stop)
		if n := r.reg.unregistered.Load() - before; n > 0 {
			t.Errorf("%s unregistered %d collector(s); the host drops a plugin's metrics when it stops", name, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := r.h.Close(ctx); err != nil {
			t.Errorf("after %s: %v; the host abandons such a plugin", name, err)
		}
	}

	t.Run("metadata", func(t *testing.T) {
		m := newPlugin(t).Metadata()
		if !agent.ValidName(m.Name) {
			t.Errorf("name %q is not a valid plugin name", m.Name)
		}
		if m.Version == "" || m.Description == "" {
			t.Errorf("metadata %+v: version and description must be set", m)
		}
		switch m.Priority {
		case agent.PriorityInfrastructure, agent.PrioritySecurity, agent.PriorityMiddleware, agent.PriorityBusiness:
		default:
			t.Errorf("priority %d is not one of the four bands", m.Priority)
		}
	})
	t.Run("initialize start stop", func(t *testing.T) {
		p := newPlugin(t)
		r := newRig(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, r.h) })
		step(t, "Start", p.Start)
		if sp, ok := p.(agent.ServiceProvider); ok {
			for _, s := range sp.Services() {
				if _, err := r.c.Get(context.Background(), s); err != nil {
					t.Errorf("declared service %q not provided: %v", s, err)
				}
			}
		}
		if hc, ok := p.(agent.HealthChecker); ok {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			h := hc.HealthCheck(ctx)
			cancel()
			if h.Status == "" {
				t.Error("HealthCheck returned no status")
			}
		}
		stop(t, r, p, "Stop")
	})
	t.Run("stop twice", func(t *testing.T) {
		p := newPlugin(t)
		r := newRig(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, r.h) })
		step(t, "Start", p.Start)
		stop(t, r, p, "Stop")
		stop(t, r, p, "second Stop")
	})
	t.Run("stop without start", func(t *testing.T) {
		p := newPlugin(t)
		r := newRig(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, r.h) })
		stop(t, r, p, "Stop")
		stop(t, r, p, "second Stop")
	})
	t.Run("stop without initialize", func(t *testing.T) {
		p := newPlugin(t)
		step(t, "Stop", p.Stop)
	})
}

// countingRegisterer counts the collectors unregistered through it.
type countingRegisterer struct {
	prometheus.Registerer
	unregistered atomic.Int32
}

func (r *countingRegisterer) Unregister(c prometheus.Collector) bool {
	r.unregistered.Add(1)
	return r.Registerer.Unregister(c)
}

type noPlugins struct{}

func (noPlugins) RunningPlugins() []agent.Plugin { return nil }
func (noPlugins) Plugins() []agent.PluginStatus  { return nil }
