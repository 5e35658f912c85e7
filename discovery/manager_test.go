package discovery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/discovery"
)

// inNamespaceEnv marks the child process that TestDNSSD runs in its own
// namespaces (dns_linux_test.go).
const inNamespaceEnv = "VITALS_DISCOVERY_TEST_NAMESPACE"

func TestMain(m *testing.M) {
	if os.Getenv(inNamespaceEnv) != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// harness runs a Manager and records what it hands on.
type harness struct {
	t   *testing.T
	m   *discovery.Manager
	reg *prometheus.Registry

	mu      sync.Mutex
	targets []discovery.Target
	updates int
}

func run(t *testing.T, yamlText string, shard discovery.Shard) *harness {
	t.Helper()
	cfg, err := decode(t, yamlText)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, reg: prometheus.NewRegistry()}
	h.m, err = discovery.NewManager(discovery.Options{
		Registerer:     h.reg,
		UpdateInterval: 20 * time.Millisecond,
		OnUpdate: func(ts []discovery.Target) {
			h.mu.Lock()
			h.targets, h.updates = ts, h.updates+1
			h.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.ApplyConfig(cfg, shard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// ids returns the ids handed on last, joined with commas.
func (h *harness) ids() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, t := range h.targets {
		ids = append(ids, t.ID)
	}
	return strings.Join(ids, ",")
}

func (h *harness) last() []discovery.Target {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.targets
}

func (h *harness) waitIDs(want string) {
	h.t.Helper()
	agenttest.Eventually(h.t, 15*time.Second, "targets "+want, func() bool { return h.ids() == want })
}

func (h *harness) errors(source string) float64 {
	return testutil.ToFloat64(h.errorsVec(source))
}

func (h *harness) errorsVec(source string) prometheus.Collector {
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "vitals_discovery_source_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == source {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// Write beside and rename over, as config management does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileSD(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llm.json")
	writeFile(t, path, `[{"targets": ["10.0.0.1:8000", "10.0.0.2:8000"], "labels": {"team": "search", "__vitals_kind__": "vllm"}}]`)
	h := run(t, `
file_sd_configs:
  - files: [`+dir+`/*.json]
relabel_configs:
  - source_labels: [__address__]
    regex: 10.0.0.9:.*
    action: drop
`, discovery.Shard{})
	h.waitIDs("10.0.0.1-8000,10.0.0.2-8000")
	got := h.last()[0]
	want := discovery.Target{ID: "10.0.0.1-8000", Endpoint: "http://10.0.0.1:8000", Kind: "vllm",
		Labels: map[string]string{"team": "search"}, Source: "file_sd_configs[0]"}
	if got.ID != want.ID || got.Endpoint != want.Endpoint || got.Kind != want.Kind || got.Source != want.Source ||
		len(got.Labels) != 1 || got.Labels["team"] != "search" {
		t.Errorf("target = %+v, want %+v", got, want)
	}

	// The file changes: one goes, one comes, one is dropped by a rule.
	writeFile(t, path, `[{"targets": ["10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.9:8000"]}]`)
	h.waitIDs("10.0.0.2-8000,10.0.0.3-8000")

	// A new file adds its targets; a broken file keeps the last good ones
	// and counts an error.
	writeFile(t, filepath.Join(dir, "more.json"), `[{"targets": ["10.0.1.1:11434"], "labels": {"__vitals_id__": "ollama-1"}}]`)
	h.waitIDs("10.0.0.2-8000,10.0.0.3-8000,ollama-1")
	before := h.errors("file_sd_configs[0]")
	writeFile(t, path, `[{"targets": [`)
	agenttest.Eventually(t, 15*time.Second, "a file_sd error counted", func() bool { return h.errors("file_sd_configs[0]") > before })
	if got := h.ids(); got != "10.0.0.2-8000,10.0.0.3-8000,ollama-1" {
		t.Errorf("after a bad file: targets %s, want the last good ones", got)
	}
	// Removing a file removes its targets.
	if err := os.Remove(filepath.Join(dir, "more.json")); err != nil {
		t.Fatal(err)
	}
	h.waitIDs("10.0.0.2-8000,10.0.0.3-8000")
}

func TestHTTPSD(t *testing.T) {
	var mu sync.Mutex
	status, body := http.StatusOK, `[{"targets": ["127.0.0.1:8000"], "labels": {"__scheme__": "https", "__metrics_path__": "/llm", "__vitals_model__": "qwen", "__vitals_metrics_url__": "http://127.0.0.1:8002/metrics"}}]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Prometheus-Refresh-Interval-Seconds") == "" {
			t.Errorf("no refresh interval header")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	set := func(s int, b string) {
		mu.Lock()
		status, body = s, b
		mu.Unlock()
	}
	h := run(t, `
http_sd_configs:
  - url: `+srv.URL+`
    refresh_interval: 50ms
`, discovery.Shard{})
	h.waitIDs("127.0.0.1-8000-llm")
	if got := h.last()[0]; got.Endpoint != "https://127.0.0.1:8000/llm" || got.Model != "qwen" || got.MetricsURL != "http://127.0.0.1:8002/metrics" {
		t.Errorf("target = %+v", got)
	}
	set(http.StatusOK, `[{"targets": ["127.0.0.1:8001", "127.0.0.1:8002"]}]`)
	h.waitIDs("127.0.0.1-8001,127.0.0.1-8002")

	// The server fails: the last good targets stay, errors are counted.
	set(http.StatusInternalServerError, "down")
	agenttest.Eventually(t, 15*time.Second, "http_sd errors counted", func() bool { return h.errors("http_sd_configs[0]") >= 2 })
	if got := h.ids(); got != "127.0.0.1-8001,127.0.0.1-8002" {
		t.Errorf("while failing: targets %s, want the last good ones", got)
	}
	// A body past the bound fails the refresh too.
	before := h.errors("http_sd_configs[0]")
	set(http.StatusOK, `[`+strings.Repeat(" ", discovery.MaxHTTPSDBytes)+`{"targets": ["127.0.0.1:8003"]}]`)
	agenttest.Eventually(t, 15*time.Second, "an oversized http_sd response counted", func() bool { return h.errors("http_sd_configs[0]") > before })
	if got := h.ids(); got != "127.0.0.1-8001,127.0.0.1-8002" {
		t.Errorf("after an oversized response: targets %s, want the last good ones", got)
	}
	set(http.StatusOK, `[]`)
	h.waitIDs("")
}

func TestReservedLabelsAndRelabel(t *testing.T) {
	dir := t.TempDir()
	many := map[string]string{}
	for i := range discovery.MaxLabels + 1 {
		many[fmt.Sprintf("l%d", i)] = "v"
	}
	groups := []map[string]any{{
		"targets": []string{"a.example:80", "b.example:80", "bad host:1"},
		"labels":  map[string]string{"__meta_env": "prod", "region": "eu"},
	}, {
		"targets": []string{"many.example:80"}, // too many labels
		"labels":  many,
	}, {
		"targets": []string{"big.example:80"}, // too long a value
		"labels":  map[string]string{"note": strings.Repeat("x", discovery.MaxLabelValueBytes+1)},
	}}
	b, _ := json.Marshal(groups)
	writeFile(t, filepath.Join(dir, "t.json"), string(b))
	h := run(t, `
file_sd_configs:
  - files: [`+dir+`/t.json]
relabel_configs:
  - source_labels: [__meta_env]
    target_label: env
  - source_labels: [__address__]
    regex: '([^.]+)\..*'
    target_label: __vitals_id__
    replacement: llm-$1
  - regex: region
    action: labeldrop
`, discovery.Shard{})
	h.waitIDs("llm-a,llm-b")
	for _, tg := range h.last() {
		if len(tg.Labels) != 1 || tg.Labels["env"] != "prod" {
			t.Errorf("%s labels = %v, want only env=prod", tg.ID, tg.Labels)
		}
	}
	const want = `
# HELP vitals_discovery_dropped_targets Discovered targets of a source's last update that are not targets, by reason: relabel (a rule dropped it), invalid, duplicate (its id is taken), limit (past max targets per source).
# TYPE vitals_discovery_dropped_targets gauge
vitals_discovery_dropped_targets{reason="duplicate",source="file_sd_configs[0]"} 0
vitals_discovery_dropped_targets{reason="invalid",source="file_sd_configs[0]"} 3
vitals_discovery_dropped_targets{reason="limit",source="file_sd_configs[0]"} 0
vitals_discovery_dropped_targets{reason="relabel",source="file_sd_configs[0]"} 0
# HELP vitals_discovery_targets Targets a discovery source yields after relabeling, before sharding.
# TYPE vitals_discovery_targets gauge
vitals_discovery_targets{source="file_sd_configs[0]"} 2
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "vitals_discovery_targets", "vitals_discovery_dropped_targets"); err != nil {
		t.Error(err)
	}
}

func metricText(t *testing.T, h *harness) string {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestApplyConfigLive(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), `[{"targets": ["10.0.0.1:80", "10.0.0.2:80"]}]`)
	writeFile(t, filepath.Join(dir, "b.json"), `[{"targets": ["10.0.9.1:80"]}]`)
	h := run(t, "file_sd_configs:\n  - files: ["+dir+"/a.json]\n", discovery.Shard{})
	h.waitIDs("10.0.0.1-80,10.0.0.2-80")

	apply := func(text string, shard discovery.Shard) {
		t.Helper()
		cfg, err := decode(t, text)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.m.ApplyConfig(cfg, shard); err != nil {
			t.Fatal(err)
		}
	}
	// A new rule applies to what the running source found.
	apply("file_sd_configs:\n  - files: ["+dir+"/a.json]\nrelabel_configs:\n  - source_labels: [__address__]\n    regex: 10.0.0.1:80\n    action: drop\n", discovery.Shard{})
	h.waitIDs("10.0.0.2-80")
	// A second source starts; the first keeps its targets.
	apply("file_sd_configs:\n  - files: ["+dir+"/a.json]\n  - files: ["+dir+"/b.json]\n", discovery.Shard{})
	h.waitIDs("10.0.0.1-80,10.0.0.2-80,10.0.9.1-80")
	// A changed source restarts with its new files; a removed one's
	// targets go.
	apply("file_sd_configs:\n  - files: ["+dir+"/b.json]\n", discovery.Shard{})
	h.waitIDs("10.0.9.1-80")
	if strings.Contains(metricText(t, h), `source="file_sd_configs[1]"`) {
		t.Error("a removed source's series remain")
	}
	// A shard change applies at once.
	apply("file_sd_configs:\n  - files: ["+dir+"/a.json]\n", discovery.Shard{Index: discovery.Owner("10.0.0.1-80", 2), Count: 2})
	agenttest.Eventually(t, 15*time.Second, "shard applied", func() bool {
		ids := h.ids()
		return strings.Contains(ids, "10.0.0.1-80") && !strings.Contains(ids, "10.0.9.1")
	})
}
