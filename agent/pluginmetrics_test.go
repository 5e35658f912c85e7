package agent_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
)

// gaugePlugin registers a gauge in Initialize and never unregisters it.
type gaugePlugin struct {
	agent.Base
	failAfterRegister bool
}

func (g *gaugePlugin) Initialize(ctx context.Context, h agent.Host) error {
	if err := h.Metrics().Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_plugin_gauge", Help: "x"})); err != nil {
		return err
	}
	if g.failAfterRegister {
		return errors.New("failed after registering")
	}
	return nil
}
func (g *gaugePlugin) Start(context.Context) error { return nil }
func (g *gaugePlugin) Stop(context.Context) error  { return nil }

func hasGauge(t *testing.T, g prometheus.Gatherer) bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "test_plugin_gauge" {
			return true
		}
	}
	return false
}

func TestHostUnregistersPluginMetrics(t *testing.T) {
	fail := false
	reg := agent.NewRegistry()
	if err := reg.Register("gauge", func(agent.Section) (agent.Plugin, error) {
		return &gaugePlugin{Base: agent.NewBase(agent.Metadata{Name: "gauge", Priority: agent.PriorityBusiness}), failAfterRegister: fail}, nil
	}); err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	m := agent.NewManager(agent.ManagerOptions{Registry: reg, Registerer: metrics})
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte("core:\n  api_gateway:\n    plugins:\n      gauge: {}\n"), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(ctx)
	if !hasGauge(t, metrics) {
		t.Fatal("the plugin's gauge is not registered")
	}
	for i := range 2 { // disabled: gone; enabled again: registers afresh
		if err := m.Disable(ctx, "gauge"); err != nil {
			t.Fatal(err)
		}
		if hasGauge(t, metrics) {
			t.Fatalf("cycle %d: gauge still registered after the plugin stopped", i)
		}
		if err := m.Enable(ctx, "gauge"); err != nil {
			t.Fatalf("cycle %d: enable again: %v", i, err)
		}
		if !hasGauge(t, metrics) {
			t.Fatalf("cycle %d: gauge not registered after enable", i)
		}
	}

	// A plugin that fails to initialize after registering leaves nothing.
	if err := m.Disable(ctx, "gauge"); err != nil {
		t.Fatal(err)
	}
	fail = true
	if err := m.Enable(ctx, "gauge"); err == nil {
		t.Fatal("enable of a failing plugin succeeded")
	}
	if hasGauge(t, metrics) {
		t.Error("gauge of a plugin that failed to initialize is still registered")
	}
	fail = false
	if err := m.Enable(ctx, "gauge"); err != nil {
		t.Fatalf("retry after the failure: %v", err)
	}
}
