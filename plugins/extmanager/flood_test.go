package extmanager_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/e2e/e2etest"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// realBus runs a broker and an ExtManager on it, as the agent does, and
// returns the ExtManager, its metrics and the broker's two endpoints.
// brokerExtra is more of the broker's section.
func realBus(t *testing.T, extSection string, brokerExtra ...string) (*extmanager.ExtManager, *prometheus.Registry, string, string) {
	t.Helper()
	pub, sub := "tcp://"+e2etest.Addr(t), "tcp://"+e2etest.Addr(t)
	reg := prometheus.NewRegistry()
	c := agent.NewContainer()
	if err := c.Provide(agent.ServicePlugins, agent.PluginDirectory(&directory{})); err != nil {
		t.Fatal(err)
	}
	events := agent.NewEvents()
	host := func(name string) *agent.PluginHost {
		return agenttest.NewHost(t, name, agent.HostOptions{Container: c, Events: events, Metrics: reg})
	}
	ctx := context.Background()
	bs, err := agent.NewSection(fmt.Sprintf("publish_address: %s\nsubscribe_address: %s\n"+
		"permissions: {extmanager: {publish: [extmanager., health., alerts., logs.], subscribe: [plugin., health., extmanager.]}}\n%s", pub, sub, strings.Join(brokerExtra, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	broker, err := messagebus.Factory(bs)
	if err != nil {
		t.Fatal(err)
	}
	bh := host(messagebus.Name)
	if err := broker.Initialize(ctx, bh); err != nil {
		t.Fatal(err)
	}
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), bh, broker) })

	es, err := agent.NewSection(extSection)
	if err != nil {
		t.Fatal(err)
	}
	p, err := extmanager.Factory(es)
	if err != nil {
		t.Fatal(err)
	}
	e := p.(*extmanager.ExtManager)
	eh := host(extmanager.Name)
	if err := e.Initialize(ctx, eh); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.SetState(agent.StateRunning, "")
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), eh, e) })
	return e, reg, pub, sub
}

// successes sums vitals_ai_probe_total{plugin=id, result="success"}.
func successes(t *testing.T, g prometheus.Gatherer, id string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "vitals_ai_probe_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["plugin"] == id && l["result"] == "success" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// busPlugin is a well-behaved external plugin: it announces, heartbeats
// and answers its health requests until ctx is done.
func busPlugin(ctx context.Context, t *testing.T, pub, sub, name string, every time.Duration) {
	t.Helper()
	c := bus.Dial(bus.Options{PublishEndpoint: pub, SubscribeEndpoint: sub, Name: name})
	t.Cleanup(func() { _ = c.Close() })
	reqs, err := c.Subscribe(ctx, "health.request."+name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	a := &busv1.Announce{Name: name, Version: "1.0.0", HeartbeatIntervalMs: every.Milliseconds()}
	m, _ := bus.NewProto(a)
	if err := c.Publish(ctx, extmanager.TopicAnnounce, m); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				hb, _ := bus.NewProto(&busv1.Heartbeat{Name: name, Sequence: seq, Announce: a})
				_ = c.Publish(ctx, extmanager.TopicHeartbeat, hb)
			case req, ok := <-reqs:
				if !ok {
					return
				}
				resp, _ := bus.NewProto(&busv1.HealthResponse{Plugin: name, State: busv1.HealthState_HEALTH_STATE_HEALTHY, Message: "ok"})
				_ = bus.Reply(ctx, c, req, resp)
			}
		}
	}()
}

// TestAnnounceFloodDoesNotStarveRealPlugins: one connection sends 20 000
// announcements under random names. The bus plugins it gets into the
// catalog are bounded by max_plugins_per_peer, the rest are counted, and
// the checks of the real plugins (an HTTP server and a bus plugin) keep
// running and passing.
func TestAnnounceFloodDoesNotStarveRealPlugins(t *testing.T) {
	const flood, perPeer = 20_000, 8
	_, url := simServer(t, probes.KindOpenAI)
	e, reg, pub, sub := realBus(t, fmt.Sprintf("directory: \"\"\ntargets: [{id: real_http, endpoint: %s}]\n"+
		"bus: {max_plugins: 64, max_plugins_per_peer: %d, default_heartbeat: 1s}\n"+
		"health: {interval: 100ms, timeout: 1s}\ndetection: {attempts: 1, timeout: 1s}\n", url, perPeer))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	busPlugin(ctx, t, pub, sub, "real_bus", 500*time.Millisecond)
	waitFor(t, 20*time.Second, "both real plugins checked", func() bool {
		return successes(t, reg, "real_http") > 0 && successes(t, reg, "real_bus") > 0
	})

	flooder := bus.Dial(bus.Options{PublishEndpoint: pub, SubscribeEndpoint: sub, Name: "flooder", QueueSize: flood, DrainTimeout: 20 * time.Second})
	if err := flooder.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	for i := range flood {
		_, _ = rand.Read(buf)
		m, _ := bus.NewProto(&busv1.Announce{Name: "fake-" + hex.EncodeToString(buf), Version: fmt.Sprint(i), HeartbeatIntervalMs: 60_000})
		if err := flooder.Publish(ctx, extmanager.TopicAnnounce, m); err != nil && !errors.Is(err, bus.ErrQueueFull) {
			t.Fatal(err)
		}
	}
	_ = flooder.Close() // sends what is queued
	httpBefore, busBefore := successes(t, reg, "real_http"), successes(t, reg, "real_bus")

	// The real plugins are still checked, and pass, while the flood is
	// worked through.
	waitFor(t, 30*time.Second, "real plugins checked again after the flood", func() bool {
		return successes(t, reg, "real_http") >= httpBefore+3 && successes(t, reg, "real_bus") >= busBefore+3
	})
	waitFor(t, 30*time.Second, "the flood refused", func() bool { return rejected(t, reg, "peer_full") > 0 })
	bus := e.Catalog().List(catalog.Filter{Source: catalog.SourceBus})
	if len(bus) > perPeer+1 {
		t.Fatalf("%d bus plugins in the catalog after the flood; want at most %d fakes and the real one", len(bus), perPeer)
	}
	if p, ok := e.Catalog().Get("real_bus"); !ok || p.Presence != catalog.PresenceActive {
		t.Fatalf("the real bus plugin after the flood: %+v, %v", p, ok)
	}
	t.Logf("flood: %v refused (peer_full), %d bus plugins kept", rejected(t, reg, "peer_full"), len(bus))
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	if !agenttest.Within(time.Until(deadline), cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// TestPlainUserCannotTakeAnotherUsersPlugin: through the real broker, a
// PLAIN user allowed every topic, whose envelopes claim to be the owner,
// can neither re-announce nor say goodbye for another user's plugin.
func TestPlainUserCannotTakeAnotherUsersPlugin(t *testing.T) {
	e, reg, pub, sub := realBus(t, "directory: \"\"\nhealth: {enabled: false}\n",
		"auth:", "  users:", "    - {username: alice, password: pw1}",
		`    - {username: mallory, password: pw2, permissions: {publish: ["*"], subscribe: ["*"]}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(name, user, pass string) *bus.Client {
		c := bus.Dial(bus.Options{PublishEndpoint: pub, SubscribeEndpoint: sub, Name: name, Username: user, Password: pass})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Mallory's envelopes claim to come from alice.
	alice, mallory := dial("alice", "alice", "pw1"), dial("alice", "mallory", "pw2")
	announce(t, alice, &busv1.Announce{Name: "gpu_probe", Version: "1.0.0", HeartbeatIntervalMs: 60_000})
	waitFor(t, 10*time.Second, "alice's plugin registered", func() bool {
		p, ok := e.Catalog().Get("gpu_probe")
		return ok && p.Owner == "user:alice"
	})
	announce(t, mallory, &busv1.Announce{Name: "gpu_probe", Version: "6.6.6", HeartbeatIntervalMs: 60_000})
	bye, _ := bus.NewProto(&busv1.Goodbye{Name: "gpu_probe", Reason: "spoofed"})
	if err := mallory.Publish(ctx, extmanager.TopicGoodbye, bye); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "mallory's announce and goodbye refused", func() bool { return rejected(t, reg, "not_owner") >= 2 })
	if p, ok := e.Catalog().Get("gpu_probe"); !ok || p.Version != "1.0.0" || p.Owner != "user:alice" {
		t.Fatalf("alice's plugin after mallory's announce and goodbye: %+v, %v", p, ok)
	}
}
