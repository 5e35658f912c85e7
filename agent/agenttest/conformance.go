package agenttest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vitals-dev/vitals/agent"
)

// NewContainer returns a container holding the host's services, as the
// lifecycle manager provides them, with a fresh metrics registry.
func NewContainer(t testing.TB) *agent.Container {
	t.Helper()
	c := agent.NewContainer(nil)
	for name, v := range map[string]any{
		agent.ServiceMetrics:        prometheus.Registerer(prometheus.NewRegistry()),
		agent.ServiceTracerProvider: noop.NewTracerProvider(),
		agent.ServiceEvents:         agent.NewEvents(),
		agent.ServicePlugins:        noPlugins{},
	} {
		if err := c.Provide(name, v); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Conformance runs the plugin contract against plugins built by newPlugin:
// Initialize → Start → Stop, Stop twice, Stop without Start, and Stop
// without Initialize's successor steps, each step within bound. setup, if
// not nil, fills the container with the services the plugin needs.
func Conformance(t *testing.T, newPlugin func(t *testing.T) agent.Plugin, setup func(t *testing.T, c *agent.Container)) {
	t.Helper()
	const bound = 15 * time.Second
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
	container := func(t *testing.T, p agent.Plugin) *agent.Container {
		c := NewContainer(t)
		if setup != nil {
			setup(t, c)
		}
		return c.For(p.Metadata().Name)
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
		c := container(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, c) })
		step(t, "Start", p.Start)
		if sp, ok := p.(agent.ServiceProvider); ok {
			for _, s := range sp.Services() {
				if _, err := c.Get(context.Background(), s); err != nil {
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
		step(t, "Stop", p.Stop)
	})
	t.Run("stop twice", func(t *testing.T) {
		p := newPlugin(t)
		c := container(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, c) })
		step(t, "Start", p.Start)
		step(t, "Stop", p.Stop)
		step(t, "second Stop", p.Stop)
	})
	t.Run("stop without start", func(t *testing.T) {
		p := newPlugin(t)
		c := container(t, p)
		step(t, "Initialize", func(ctx context.Context) error { return p.Initialize(ctx, c) })
		step(t, "Stop", p.Stop)
		step(t, "second Stop", p.Stop)
	})
	t.Run("stop without initialize", func(t *testing.T) {
		p := newPlugin(t)
		step(t, "Stop", p.Stop)
	})
}

type noPlugins struct{}

func (noPlugins) RunningPlugins() []agent.Plugin { return nil }
func (noPlugins) Plugins() []agent.PluginStatus  { return nil }
