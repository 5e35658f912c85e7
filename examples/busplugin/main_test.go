package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/e2e/e2etest"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func freeAddr(t *testing.T) string {
	return "tcp://" + e2etest.Addr(t)
}

// TestExamplePlugin runs the example against a real broker: announce,
// health request/response, heartbeat, goodbye on cancellation.
func TestExamplePlugin(t *testing.T) {
	pub, sub := freeAddr(t), freeAddr(t)
	// Health requests are the agent's to send: the watcher is an agent
	// plugin, on the broker's in-process client.
	s, _ := agent.NewSection("publish_address: " + pub + "\nsubscribe_address: " + sub +
		"\npermissions: {ext_manager: {publish: [\"health.request.\"], subscribe: [\"plugin.\"]}}")
	p, err := messagebus.Factory(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	host := agenttest.NewHost(t, messagebus.Name, agent.HostOptions{})
	if err := p.Initialize(ctx, host); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer agenttest.Stop(context.Background(), host, p)

	provider, err := agent.Require[bus.Provider](ctx, host, bus.ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	b, err := provider.ClientFor("ext_manager")
	if err != nil {
		t.Fatal(err)
	}
	watch := b.(*bus.View)
	defer watch.Close()
	ch, err := watch.Subscribe(ctx, "plugin.")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	pctx, stopPlugin := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(pctx, slog.New(slog.DiscardHandler), "demo", pub, sub, "", "", 50*time.Millisecond)
	}()

	wait := func(topic string) bus.Message {
		t.Helper()
		for {
			select {
			case m := <-ch:
				if m.Topic == topic {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("no %s", topic)
			}
		}
	}
	var a busv1.Announce
	if err := wait("plugin.announce").Decode(&a); err != nil || a.Name != "demo" {
		t.Fatalf("announce %+v %v", &a, err)
	}
	wait("plugin.heartbeat")
	// The plugin subscribed before announcing; poll until it answers.
	var resp bus.Message
	for {
		rctx, c := context.WithTimeout(ctx, 500*time.Millisecond)
		resp, err = watch.Request(rctx, "health.request.demo", bus.Message{})
		c()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	var hr busv1.HealthResponse
	if err != nil || resp.Decode(&hr) != nil || hr.State != busv1.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("health: %v %+v", err, &hr)
	}
	stopPlugin()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var g busv1.Goodbye
	if err := wait("plugin.goodbye").Decode(&g); err != nil || g.Name != "demo" {
		t.Fatalf("goodbye %+v %v", &g, err)
	}
}

// agentOn runs the agent's side of the bus, a broker and an ExtManager, on
// pub and sub; stop ends both, as an agent restart does.
func agentOn(t *testing.T, pub, sub string) (cat *catalog.Catalog, stop func()) {
	t.Helper()
	ctx := context.Background()
	c := agent.NewContainer()
	if err := c.Provide(agent.ServicePlugins, agent.PluginDirectory(noPlugins{})); err != nil {
		t.Fatal(err)
	}
	events, reg := agent.NewEvents(), prometheus.NewRegistry()
	hosts := map[string]*agent.PluginHost{}
	bs, _ := agent.NewSection("publish_address: " + pub + "\nsubscribe_address: " + sub +
		"\npermissions: {extmanager: {publish: [extmanager., health., logs.], subscribe: [plugin., health.]}}")
	broker, err := messagebus.Factory(bs)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := agent.NewSection("directory: \"\"\nhealth: {enabled: false}\nbus: {default_heartbeat: 50ms}")
	em, err := extmanager.Factory(es)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		name string
		p    agent.Plugin
	}{{messagebus.Name, broker}, {extmanager.Name, em}} {
		hosts[p.name] = agenttest.NewHost(t, p.name, agent.HostOptions{Container: c, Events: events, Metrics: reg})
		if err := p.p.Initialize(ctx, hosts[p.name]); err != nil {
			t.Fatal(err)
		}
		if err := p.p.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = agenttest.Stop(ctx, hosts[extmanager.Name], em)
			_ = agenttest.Stop(ctx, hosts[messagebus.Name], broker)
		})
	}
	t.Cleanup(stop)
	return em.(*extmanager.ExtManager).Catalog(), stop
}

type noPlugins struct{}

func (noPlugins) RunningPlugins() []agent.Plugin { return nil }
func (noPlugins) Plugins() []agent.PluginStatus  { return nil }

// TestExampleRediscoveredAfterAgentRestart: the plugin keeps running while
// the agent restarts; the new agent, which never saw its announcement,
// registers it from its heartbeats.
func TestExampleRediscoveredAfterAgentRestart(t *testing.T) {
	pub, sub := freeAddr(t), freeAddr(t)
	registered := func(cat *catalog.Catalog, what string) {
		t.Helper()
		agenttest.Eventually(t, 20*time.Second, "demo registered "+what, func() bool {
			p, ok := cat.Get("demo")
			return ok && p.Source == catalog.SourceBus && p.Version == "0.1.0"
		})
	}
	cat, stop := agentOn(t, pub, sub)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), "demo", pub, sub, "", "", 50*time.Millisecond)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	registered(cat, "by the first agent")

	stop()
	cat, _ = agentOn(t, pub, sub)
	registered(cat, "by the restarted agent, from a heartbeat")
}
