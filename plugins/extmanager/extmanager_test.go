package extmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/bus/bustest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// allowAll hands every plugin an unrestricted client of the in-memory bus.
type allowAll struct{ b *bustest.Bus }

func (a allowAll) ClientFor(name string, _ ...bus.Permissions) (bus.Bus, error) {
	return a.b.Client(name, bus.AllowAll), nil
}

// directory is a settable plugin directory.
type directory struct {
	mu      sync.Mutex
	plugins []agent.Plugin
}

func (d *directory) RunningPlugins() []agent.Plugin {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]agent.Plugin(nil), d.plugins...)
}

func (d *directory) Plugins() []agent.PluginStatus { return nil }

func (d *directory) set(ps ...agent.Plugin) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.plugins = ps
}

type rig struct {
	t       testing.TB
	e       *extmanager.ExtManager
	h       *agent.PluginHost
	bus     *bustest.Bus
	events  *agent.Events
	dir     *directory
	metrics *agent.MetricsRegistry
	evs     chan catalog.Event
}

func start(t testing.TB, section string) *rig {
	t.Helper()
	return startWith(t, section, nil)
}

// tracerProvider is the key under which startWith's services give the
// Host's tracer provider rather than a service.
const tracerProvider = "tracer_provider"

// hostLogger is the key under which startWith's services give the Host's
// logger.
const hostLogger = "logger"

// startWith is start with extra services in the container, provided by
// another plugin.
func startWith(t testing.TB, section string, services map[string]any) *rig {
	t.Helper()
	s, err := agent.NewSection(section)
	if err != nil {
		t.Fatal(err)
	}
	p, err := extmanager.Factory(s)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, e: p.(*extmanager.ExtManager), bus: bustest.New(), events: agent.NewEvents(), dir: &directory{},
		metrics: agent.NewMetricsRegistry(prometheus.NewRegistry()), evs: make(chan catalog.Event, 8192)}
	c := agent.NewContainer()
	for name, v := range map[string]any{
		agent.ServicePlugins: agent.PluginDirectory(r.dir), bus.ServiceName: bus.Provider(allowAll{r.bus}),
	} {
		if err := c.Provide(name, v); err != nil {
			t.Fatal(err)
		}
	}
	o := agent.HostOptions{Container: c, Events: r.events, Metrics: r.metrics}
	other := agenttest.NewHost(t, "other", agent.HostOptions{Container: c})
	for name, v := range services {
		if name == tracerProvider {
			o.TracerProvider = v.(trace.TracerProvider)
			continue
		}
		if name == hostLogger {
			o.Logger = v.(*slog.Logger)
			continue
		}
		if err := other.Provide(name, v); err != nil {
			t.Fatal(err)
		}
	}
	r.h = agenttest.NewHost(t, extmanager.Name, o)
	r.e.Catalog().Subscribe(func(ev catalog.Event) { r.evs <- ev })
	ctx := context.Background()
	if err := r.e.Initialize(ctx, r.h); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.SetState(agent.StateRunning, "") // as the host does
	t.Cleanup(func() {
		if err := r.stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r
}

// stop stops the ExtManager as the host does.
func (r *rig) stop(ctx context.Context) error { return agenttest.Stop(ctx, r.h, r.e) }

// await waits for an event of type typ about id, skipping others.
func (r *rig) await(typ catalog.EventType, id string) catalog.Event {
	r.t.Helper()
	return r.awaitWhere(typ, id, func(catalog.Event) bool { return true })
}

// awaitWhere waits for an event of type typ about id for which ok is true.
func (r *rig) awaitWhere(typ catalog.EventType, id string, ok func(catalog.Event) bool) catalog.Event {
	r.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-r.evs:
			if ev.Type == typ && ev.ID == id && ok(ev) {
				return ev
			}
		case <-deadline:
			r.t.Fatalf("no %s event for %s; catalog: %+v", typ, id, r.e.Catalog().List(catalog.Filter{}))
		}
	}
}

// awaitDetected waits until detection of id has settled.
func (r *rig) awaitDetected(id string) catalog.AIPlugin {
	r.t.Helper()
	var p catalog.AIPlugin
	agenttest.Eventually(r.t, 15*time.Second, id+" detected", func() bool {
		var ok bool
		p, ok = r.e.Catalog().Get(id)
		return ok && p.Detection.State != catalog.DetectPending
	})
	return p
}

func simServer(t testing.TB, kind probes.Kind) (*aisim.Server, string) {
	t.Helper()
	sim, err := aisim.New(aisim.Config{Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return sim, srv.URL
}

func TestStaticTargetsAreDetected(t *testing.T) {
	_, llama := simServer(t, probes.KindLlamaCpp)
	_, ollama := simServer(t, probes.KindOllama)
	_, tei := simServer(t, probes.KindTEI)
	r := start(t, fmt.Sprintf(`
directory: ""
targets:
  - {id: llm, endpoint: %q}
  - {id: local-ollama, endpoint: %q, labels: {team: search}}
  - {id: embedder, endpoint: %q, kind: tei}
`, llama, ollama, tei))
	for id, want := range map[string]struct {
		kind probes.Kind
		cap  probes.Capability
	}{
		"llm": {probes.KindLlamaCpp, probes.CapChat}, "local-ollama": {probes.KindOllama, probes.CapChat},
		"embedder": {probes.KindTEI, probes.CapEmbeddings},
	} {
		p := r.awaitDetected(id)
		if p.Kind != want.kind || !p.HasCapability(want.cap) || p.Detection.State != catalog.DetectDone || p.Version == "" || len(p.Models) == 0 {
			t.Errorf("%s = kind %s caps %v state %s version %q models %d", id, p.Kind, p.Capabilities, p.Detection.State, p.Version, len(p.Models))
		}
	}

	want := `
# HELP vitals_ai_plugins AI plugins known, by discovery source.
# TYPE vitals_ai_plugins gauge
vitals_ai_plugins{source="bus"} 0
vitals_ai_plugins{source="config"} 3
vitals_ai_plugins{source="directory"} 0
vitals_ai_plugins{source="discovery"} 0
vitals_ai_plugins{source="inprocess"} 0
`
	if err := testutil.GatherAndCompare(r.metrics, strings.NewReader(want), "vitals_ai_plugins"); err != nil {
		t.Error(err)
	}
	// One series per capability a plugin has, none for those it lacks.
	caps := 0
	for _, p := range r.e.Catalog().List(catalog.Filter{}) {
		caps += len(p.Capabilities)
	}
	if n, err := testutil.GatherAndCount(r.metrics, "vitals_ai_plugin_capability"); err != nil || n != caps || caps == 0 {
		t.Errorf("capability series = %d, want %d, one per capability the plugins have", n, caps)
	}
	if got := gaugeValue(t, r.metrics, "vitals_ai_plugin_capability", map[string]string{"plugin": "embedder", "capability": "embeddings"}); got != 1 {
		t.Errorf("embedder embeddings = %v, want 1", got)
	}
	if hasSeries(t, r.metrics, "vitals_ai_plugin_capability", map[string]string{"plugin": "embedder", "capability": "chat"}) {
		t.Error("embedder has a chat capability series, want none for a capability it lacks")
	}
	if got := gaugeValue(t, r.metrics, "vitals_ai_plugin_info", map[string]string{"plugin": "llm", "kind": "llamacpp", "source": "config"}); got != 1 {
		t.Errorf("info{llm} = %v", got)
	}

	// Bus events went out on extmanager.registered.
	var registered int
	for _, m := range r.bus.Published() {
		if m.Topic == "extmanager.registered" {
			registered++
		}
	}
	if registered != 3 {
		t.Errorf("extmanager.registered published %d times, want 3", registered)
	}
}

func TestVersionChangeIsSeen(t *testing.T) {
	sim, url := simServer(t, probes.KindOllama)
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\ndetection: {redetect_interval: 1s}\ntargets: [{id: o, endpoint: %q}]\n", url))
	first := r.awaitDetected("o")
	sim.SetVersion("0.99.1")
	ev := r.await(catalog.EventVersionChanged, "o")
	if ev.OldVersion != first.Version || ev.Version != "0.99.1" {
		t.Errorf("version change %q → %q, want %q → 0.99.1", ev.OldVersion, ev.Version, first.Version)
	}
}

func TestUnknownAndUnreachableServers(t *testing.T) {
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>hello</html>")
	}))
	defer odd.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\ndetection: {attempts: 2, timeout: 500ms}\ntargets: [{id: odd, endpoint: %q}, {id: gone, endpoint: %q}]\n", odd.URL, closedURL))
	p := r.awaitDetected("odd")
	if p.Kind != probes.KindUnknown || p.Detection.State != catalog.DetectUnknown || p.Detection.Reason == "" {
		t.Errorf("odd = %s %s %q", p.Kind, p.Detection.State, p.Detection.Reason)
	}
	p = r.awaitDetected("gone")
	if p.Detection.State != catalog.DetectFailed || p.Detection.Attempts != 2 {
		t.Errorf("gone = %s after %d attempts (%q)", p.Detection.State, p.Detection.Attempts, p.Detection.Reason)
	}
	if h := r.e.HealthCheck(context.Background()); h.Status != agent.HealthDegraded || !strings.Contains(h.Message, "gone") {
		t.Errorf("extmanager health = %+v", h)
	}
}

func TestReloadReconcilesTargets(t *testing.T) {
	_, url := simServer(t, probes.KindOpenAI)
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\ntargets: [{id: a, endpoint: %q}, {id: b, endpoint: %q}]\n", url, url))
	r.await(catalog.EventRegistered, "b")
	s, _ := agent.NewSection(fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\ntargets: [{id: b, endpoint: %q}, {id: c, endpoint: %q}]\n", url, url))
	if err := r.e.Reload(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	// Reconcile registers before it deregisters; wait for whichever is last.
	r.await(catalog.EventDeregistered, "a")
	if _, ok := r.e.Catalog().Get("c"); !ok {
		t.Error("c not registered by the reload")
	}
	if got := len(r.e.Catalog().List(catalog.Filter{})); got != 2 {
		t.Errorf("%d plugins after reload, want 2", got)
	}
	bad, _ := agent.NewSection("bus: {enabled: true}\n")
	if err := r.e.Reload(context.Background(), bad); err == nil {
		t.Error("turning the bus source on by reload was accepted")
	}
	bad, _ = agent.NewSection("directory: \"\"\nbus: {enabled: false}\nhealth: {concurrency: 7}\n")
	if err := r.e.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "health.concurrency") {
		t.Errorf("a new health.concurrency by reload: %v, want an error naming it", err)
	}
}

func TestAdminAPI(t *testing.T) {
	_, tei := simServer(t, probes.KindTEI)
	_, llama := simServer(t, probes.KindLlamaCpp)
	// Health checks off: the filter on health=unknown must see both.
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\ntargets: [{id: emb, endpoint: %q}, {id: llm, endpoint: %q}]\n", tei, llama))
	r.awaitDetected("emb")
	r.awaitDetected("llm")
	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, tt := range []struct {
		path  string
		code  int
		count int
	}{
		{"/api/v1/admin/ai-plugins", 200, 2},
		{"/api/v1/admin/ai-plugins?capability=embeddings", 200, 1},
		{"/api/v1/admin/ai-plugins?kind=llamacpp", 200, 1},
		{"/api/v1/admin/ai-plugins?kind=ollama", 200, 0},
		{"/api/v1/admin/ai-plugins?health=unknown", 200, 2},
		{"/api/v1/admin/ai-plugins?source=config&capability=chat", 200, 1},
		{"/api/v1/admin/ai-plugins?capability=telepathy", 400, -1},
		{"/api/v1/admin/ai-plugins?kind=gpt", 400, -1},
		{"/api/v1/admin/ai-plugins?health=sad", 400, -1},
		{"/api/v1/admin/ai-plugins?capabilty=chat", 400, -1},
		{"/api/v1/admin/ai-plugins?kind=tei&kind=llamacpp", 400, -1},
	} {
		code, body := get(tt.path)
		if code != tt.code {
			t.Errorf("%s: %d %v", tt.path, code, body)
			continue
		}
		if tt.count >= 0 && int(body["count"].(float64)) != tt.count {
			t.Errorf("%s: count %v, want %d", tt.path, body["count"], tt.count)
		}
		if tt.code == 400 && body["error"] == "" {
			t.Errorf("%s: no error message", tt.path)
		}
	}
	if code, body := get("/api/v1/admin/ai-plugins/emb"); code != 200 || body["kind"] != "tei" {
		t.Errorf("emb: %d %v", code, body)
	}
	if code, body := get("/api/v1/admin/ai-plugins/nope"); code != 404 || !strings.Contains(body["error"].(string), `unknown AI plugin "nope"`) {
		t.Errorf("nope: %d %v", code, body)
	}
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		s, _ := agent.NewSection("directory: \"\"\n")
		p, err := extmanager.Factory(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}, func(t *testing.T, c *agent.Container) {
		if err := c.Provide(bus.ServiceName, bus.Provider(allowAll{bustest.New()})); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"targets: [{id: a}]\n", "section.targets[0].endpoint: required"},
		{"targets: [{id: a, endpoint: 'http://h:1'}, {id: a, endpoint: 'http://h:2'}]\n", `duplicate id "a"`},
		{"detection: {attempts: 0}\n", "section.detection.attempts: must be 1 to 20"},
		{"bus: {lost_after: 3, deregister_after: 2}\n", "section.bus.deregister_after: must be more than lost_after"},
		{"targets: [{id: a, endpoint: 'http://h:1', kind: unknown}]\n", "cannot be configured"},
		{"targets: [{id: a, endpoint: 'http://h:1', metrics_url: 'h:8002/metrics'}]\n", `section.targets[0].metrics_url: "h:8002/metrics" is not an http(s) URL`},
		{"targets: [{id: a, endpoint: 'http://h:1', metrics_url: 'http://u:secret@h:8002'}]\n", "section.targets[0].metrics_url: credentials in the URL"},
		{"dirctory: x\n", `unknown key "dirctory"; did you mean "directory"?`},
		{"bus: {max_plugins: 0}\n", "section.bus.max_plugins: must be 1 to 100000"},
		{"bus: {max_plugins: 4, max_plugins_per_peer: 5}\n", "section.bus.max_plugins_per_peer: must be 1 to max_plugins (4)"},
		{"bus: {allowed_endpoints: [loopback, 10.0.0.0/33]}\n", `section.bus.allowed_endpoints[1]: "10.0.0.0/33" is not a CIDR prefix`},
		{"bus: {allowed_endpoints: ['http://x']}\n", `section.bus.allowed_endpoints[0]: "http://x" is a URL: give the host`},
		{"bus: {allowed_endpoints: ['bad host!']}\n", `section.bus.allowed_endpoints[0]: "bad host!": want loopback, peer, an IP address`},
		// Several problems of one section are reported together.
		{"targets: [{id: a}]\ndetection: {attempts: 0, concurrency: 0}\n", "section.targets[0].endpoint: required"},
		{"targets: [{id: a}]\ndetection: {attempts: 0, concurrency: 0}\n", "section.detection.attempts: must be 1 to 20"},
		{"targets: [{id: a}]\ndetection: {attempts: 0, concurrency: 0}\n", "section.detection.concurrency: must be 1 to 256"},
		{"targets: [{id: a, labels: [1]}, {id: b, endpont: x}]\n", "section.targets[0].labels: want a mapping of keys, got a list"},
		{"targets: [{id: a, labels: [1]}, {id: b, endpont: x}]\n", `section.targets[1].endpont: unknown key "endpont"; did you mean "endpoint"?`},
		// Prometheus-style discovery: Prometheus' own checks, at their line.
		{"file_sd_configs:\n  - files: [a.json]\n    refresh: 1m\n", `<section>:3:5: section.file_sd_configs[0].refresh: unknown key "refresh"`},
		{"dns_sd_configs:\n  - names: [a.example]\n    type: A\n", "<section>:2:10: section.dns_sd_configs[0]: a port is required"},
		{"http_sd_configs:\n  - url: ftp://x\n", "<section>:2:8: section.http_sd_configs[0]: URL scheme must be"},
		{"kubernetes_sd_configs:\n  - role: node\n", `<section>:2:5: section.kubernetes_sd_configs[0].role: role "node" is not supported here`},
		{"relabel_configs:\n  - action: hashmod\n    target_label: x\n", "<section>:2:11: section.relabel_configs[0]: relabel configuration for hashmod requires non-zero modulus"},
		{"relabel_configs:\n  - action: keep\n    regex: '('\n", "<section>:2:11: section.relabel_configs[0]: error parsing regexp"},
		{"shard: {count: 3, index: 3}\n", "<section>:1:1: section.shard: index: must be 0 to 2 (count-1), got 3"},
		{"shard: {count: 2000, index: 1}\n", "section.shard: count: must be 0 to 1024"},
		{"probe: {concurrency: 0}\n", "section.probe.concurrency: must be 1 to 1024"},
		{"probe: {allowed_targets: [peer]}\n", `section.probe.allowed_targets[0]: "peer" has no meaning for /probe`},
		{"probe: {modules: {x: {probes: [readiness], timeout: 1s}}}\n", "section.probe.modules.x.probes: must start with liveness"},
		{"probe: {modules: {x: {probes: [liveness, synthetic, readiness], timeout: 1s}}}\n", `section.probe.modules.x.probes: "readiness": each once, in the order liveness, readiness, synthetic`},
		{"probe: {modules: {x: {probes: [liveness, ping], timeout: 1s}}}\n", `section.probe.modules.x.probes: "ping": want liveness, readiness, synthetic`},
		{"probe: {modules: {x: {probes: [liveness]}}}\n", "section.probe.modules.x.timeout: must be above 0 and at most 2m0s"},
		{"probe: {modules: {x: {probes: [liveness], timeout: 1s, max_tokens: 9}}}\n", "section.probe.modules.x.max_tokens: must be 0"},
	} {
		if strings.Contains(tt.text, "kubernetes_sd_configs") && !discovery.KubernetesBuiltIn {
			continue
		}
		s, err := agent.NewSection(tt.text)
		if err == nil {
			_, err = extmanager.Factory(s)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.text, err, tt.want)
		}
	}
}

// findSeries returns the series of name whose labels include want, nil
// when there is none.
func findSeries(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

// hasSeries reports whether g has a series of name with the labels want.
func hasSeries(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) bool {
	t.Helper()
	return findSeries(t, g, name, want) != nil
}

// gaugeValue returns the value of the series of name whose labels include
// want, failing the test if there is none.
func gaugeValue(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	m := findSeries(t, g, name, want)
	if m == nil {
		t.Fatalf("no %s series with %v", name, want)
	}
	return m.GetGauge().GetValue()
}

func discoveryErrors(t *testing.T, g prometheus.Gatherer, source string) prometheus.Collector {
	t.Helper()
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "vitals_ai_discovery_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == source {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return 0 })
}

var _ = proto.Marshal
