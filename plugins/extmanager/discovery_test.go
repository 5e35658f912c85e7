package extmanager_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func TestDirectoryDiscovery(t *testing.T) {
	_, url := simServer(t, probes.KindVLLM)
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("present.yaml", "endpoint: "+url+"\n")
	r := start(t, fmt.Sprintf("directory: %q\nbus: {enabled: false}\n", dir))
	if _, ok := r.e.Catalog().Get("present"); !ok {
		t.Fatal("manifest present at start not registered by the time Start returned")
	}

	write("new.yaml", "endpoint: "+url+"\nlabels: {tier: gold}\n")
	r.await(catalog.EventRegistered, "new")

	write("new.yaml", "endpoint: "+url+"\nlabels: {tier: silver}\n")
	ev := r.awaitWhere(catalog.EventUpdated, "new", func(ev catalog.Event) bool { return !ev.FromDetection })
	if ev.Plugin.Labels["tier"] != "silver" {
		t.Errorf("edited labels = %v", ev.Plugin.Labels)
	}

	// A bad edit is reported and changes nothing.
	write("new.yaml", "endpoint: "+url+"\nlables: {tier: bronze}\n")
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return testutil.ToFloat64(discoveryErrors(t, r.metrics, "directory")) >= 1 }) {
		t.Fatal("bad manifest not counted")
	}
	if p, ok := r.e.Catalog().Get("new"); !ok || p.Labels["tier"] != "silver" {
		t.Errorf("after a bad edit: %+v %v", p.Labels, ok)
	}

	if err := os.Remove(filepath.Join(dir, "new.yaml")); err != nil {
		t.Fatal(err)
	}
	r.await(catalog.EventDeregistered, "new")
	if _, ok := r.e.Catalog().Get("present"); !ok {
		t.Error("removing one manifest removed another")
	}
}

func announce(t *testing.T, b bus.Bus, a *busv1.Announce) {
	t.Helper()
	m, err := bus.NewProto(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), extmanager.TopicAnnounce, m); err != nil {
		t.Fatal(err)
	}
}

func TestBusDiscovery(t *testing.T) {
	r := start(t, "directory: \"\"\nbus: {lost_after: 2, deregister_after: 4, default_heartbeat: 20ms}\n")
	ext := r.bus.Client("gpu_probe", bus.AllowAll)
	ctx := context.Background()

	announce(t, ext, &busv1.Announce{Name: "gpu_probe", Version: "1.0.0", Capabilities: []string{"embeddings", "teleport"}, HeartbeatIntervalMs: 20})
	ev := r.await(catalog.EventRegistered, "gpu_probe")
	if ev.Source != catalog.SourceBus || len(ev.Plugin.Capabilities) != 1 || ev.Plugin.Capabilities[0] != probes.CapEmbeddings {
		t.Errorf("registered = %+v", ev.Plugin)
	}

	// Re-announce with a new version.
	announce(t, ext, &busv1.Announce{Name: "gpu_probe", Version: "1.1.0", Capabilities: []string{"embeddings"}, HeartbeatIntervalMs: 20})
	if ev := r.await(catalog.EventVersionChanged, "gpu_probe"); ev.OldVersion != "1.0.0" || ev.Version != "1.1.0" {
		t.Errorf("version change = %q → %q", ev.OldVersion, ev.Version)
	}

	// No heartbeats: lost, then deregistered.
	r.await(catalog.EventLost, "gpu_probe")
	r.await(catalog.EventDeregistered, "gpu_probe")

	// Back, then a goodbye.
	announce(t, ext, &busv1.Announce{Name: "gpu_probe", Version: "1.1.0", HeartbeatIntervalMs: 60000})
	r.await(catalog.EventRegistered, "gpu_probe")
	hb, _ := bus.NewProto(&busv1.Heartbeat{Name: "gpu_probe", Sequence: 1})
	if err := ext.Publish(ctx, extmanager.TopicHeartbeat, hb); err != nil {
		t.Fatal(err)
	}
	bye, _ := bus.NewProto(&busv1.Goodbye{Name: "gpu_probe", Reason: "shutting down"})
	if err := ext.Publish(ctx, extmanager.TopicGoodbye, bye); err != nil {
		t.Fatal(err)
	}
	if ev := r.await(catalog.EventDeregistered, "gpu_probe"); ev.Reason != "goodbye: shutting down" {
		t.Errorf("goodbye reason = %q", ev.Reason)
	}

	// Malformed input is counted, not fatal.
	if err := ext.Publish(ctx, extmanager.TopicAnnounce, bus.Message{Payload: []byte{0xff, 0xff}}); err != nil {
		t.Fatal(err)
	}
	announce(t, ext, &busv1.Announce{Name: "Not Valid"})
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return testutil.ToFloat64(discoveryErrors(t, r.metrics, "bus")) >= 2 }) {
		t.Fatal("malformed announcements not counted")
	}
}

// aiPlugin is an in-process AI plugin.
type aiPlugin struct {
	agent.Base
	url   string
	asked atomic.Int32 // Capabilities calls
}

func (a *aiPlugin) Initialize(context.Context, agent.Host) error { return nil }
func (a *aiPlugin) Start(context.Context) error                  { return nil }
func (a *aiPlugin) Stop(context.Context) error                   { return nil }
func (a *aiPlugin) Endpoint() string                             { return a.url }
func (a *aiPlugin) Capabilities(context.Context) (probes.Detection, error) {
	a.asked.Add(1)
	return probes.Detection{Kind: probes.KindOpenAI, Version: "2.0", Capabilities: []probes.Capability{probes.CapRerank}}, nil
}
func (a *aiPlugin) HealthCheck(context.Context) agent.Health {
	return agent.Health{Status: agent.HealthOK, Message: "fine"}
}

var _ catalog.AI = (*aiPlugin)(nil)

func TestInProcessDiscovery(t *testing.T) {
	// Health checks off: the engine would probe the endpoint, which is
	// not served here, and replace the plugin's own verdict.
	r := start(t, "directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\n")
	ai := &aiPlugin{Base: agent.NewBase(agent.Metadata{Name: "reranker", Version: "2.0"}), url: "http://127.0.0.1:1"}
	r.dir.set(ai)
	r.events.Emit(agent.Event{Plugin: "reranker", To: agent.StateRunning})
	ev := r.await(catalog.EventRegistered, "reranker")
	if ev.Source != catalog.SourceInProcess || ev.Plugin.Endpoint != "http://127.0.0.1:1" {
		t.Errorf("registered = %+v", ev.Plugin)
	}
	var p catalog.AIPlugin
	if !agenttest.Within(10*time.Second, func() bool {
		p, _ = r.e.Catalog().Get("reranker")
		return p.HasCapability(probes.CapRerank) && p.Health != nil && p.Health.State == health.StateHealthy
	}) {
		t.Fatalf("in-process capabilities and health not recorded: %+v", p)
	}
	r.dir.set()
	r.events.Emit(agent.Event{Plugin: "reranker", To: agent.StateStopping})
	r.await(catalog.EventDeregistered, "reranker")
}

// Rescans follow every lifecycle event; only a new instance is asked again.
func TestInProcessAskedOncePerInstance(t *testing.T) {
	r := start(t, "directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\n")
	newAI := func(name string) *aiPlugin {
		return &aiPlugin{Base: agent.NewBase(agent.Metadata{Name: name, Version: "2.0"}), url: "http://127.0.0.1:1"}
	}
	first := newAI("reranker")
	running := []agent.Plugin{first}
	r.dir.set(running...)
	r.events.Emit(agent.Event{Plugin: "reranker", To: agent.StateRunning})
	r.await(catalog.EventRegistered, "reranker")
	// Each further plugin is registered by a rescan, which also sees the
	// first one again; rescans run one at a time.
	for i := range 3 {
		other := newAI(fmt.Sprintf("other%d", i))
		running = append(running, other)
		r.dir.set(running...)
		r.events.Emit(agent.Event{Plugin: other.Name(), To: agent.StateRunning})
		r.await(catalog.EventRegistered, other.Name())
	}
	if n := first.asked.Load(); n != 1 {
		t.Errorf("the first instance was asked %d times over 4 scans, want 1", n)
	}
	// The plugin restarted: a new instance is asked.
	again := newAI("reranker")
	running[0] = again
	r.dir.set(running...)
	r.events.Emit(agent.Event{Plugin: "reranker", To: agent.StateRunning})
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return again.asked.Load() != 0 }) {
		t.Fatal("the new instance was never asked")
	}
}
