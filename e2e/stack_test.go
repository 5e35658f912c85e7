package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/dashboards"
	"github.com/vitals-dev/vitals/e2e/e2etest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// notification is one alert of one webhook call, as Alertmanager sends it.
type notification struct {
	Receiver string
	Status   string
	Labels   map[string]string
	At       time.Time
}

// receiver is the webhook receiver: it keeps every alert it was sent.
type receiver struct {
	mu  sync.Mutex
	got []notification
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	rc.mu.Lock()
	for _, a := range msg.Alerts {
		rc.got = append(rc.got, notification{Receiver: strings.TrimPrefix(r.URL.Path, "/"), Status: a.Status, Labels: a.Labels, At: now})
	}
	rc.mu.Unlock()
}

// wait returns the first notification after since that matches.
func (rc *receiver) wait(ctx context.Context, timeout time.Duration, since time.Time, alert, plugin, status string) (notification, error) {
	var found notification
	err := e2etest.Poll(ctx, timeout, 50*time.Millisecond, fmt.Sprintf("%s %s for %s at the webhook", alert, status, plugin), func(context.Context) error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, n := range rc.got {
			if n.At.After(since) && n.Labels["alertname"] == alert && n.Labels["plugin"] == plugin && n.Status == status {
				found = n
				return nil
			}
		}
		return fmt.Errorf("%d notifications so far", len(rc.got))
	})
	return found, err
}

// count returns how many notifications for alert and plugin came after
// since, firing or resolved.
func (rc *receiver) count(alert, plugin string, since time.Time) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, x := range rc.got {
		if x.At.After(since) && x.Labels["alertname"] == alert && x.Labels["plugin"] == plugin {
			n++
		}
	}
	return n
}

type stack struct {
	root, dir     string
	aisim, vitals string
	agent, prom   string
	am            string
	sims          map[string]*sim
	hook          *receiver
	hookURL       string
}

type sim struct {
	kind, addr string
	proc       *e2etest.Proc
}

// startSim runs aisim of kind on addr (127.0.0.1:0 for a free port) and
// returns it once it listens.
func (s *stack) startSim(ctx context.Context, t *testing.T, kind, addr string) *sim {
	t.Helper()
	p := e2etest.Start(t, s.aisim, "--kind", kind, "--listen", addr)
	re := regexp.MustCompile(`listening on http://(\S+)`)
	var got string
	err := e2etest.Poll(ctx, 30*time.Second, 20*time.Millisecond, "aisim "+kind+" listening", func(context.Context) error {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			got = m[1]
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("aisim exited: %s", p.Output())
		}
		return fmt.Errorf("not yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	if kind == "ollama" {
		// Ollama holds no model until a request loads one, and the agent
		// calls a server without one cold and never loads it: load the
		// chat model for good, as a user's request with keep_alive -1 does.
		resp, err := http.Post("http://"+got+"/api/generate", "application/json", strings.NewReader(`{"model":"tiny","keep_alive":-1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("load the Ollama model: http %d", resp.StatusCode)
		}
	}
	return &sim{kind: kind, addr: got, proc: p}
}

// setKnobs posts knobs (a JSON object) to the named simulator.
func (s *stack) setKnobs(ctx context.Context, t *testing.T, name, knobs string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.sims[name].addr+"/aisim/knobs", strings.NewReader(knobs))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("set knobs %s on %s: %s", knobs, name, resp.Status)
	}
}

func (s *stack) query(ctx context.Context, q string) ([]json.RawMessage, error) {
	b, err := e2etest.Get(ctx, "http://"+s.prom+"/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	var res []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &res); err != nil {
		// A scalar or string result is one value.
		return []json.RawMessage{r.Data.Result}, nil //nolint:nilerr // not a vector
	}
	return res, nil
}

func (s *stack) writeConfigs(t *testing.T) {
	t.Helper()
	s.writeCore(t, "")
	prom := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
alerting:
  alertmanagers: [{static_configs: [{targets: [%q]}]}]
scrape_configs:
  - job_name: vitals
    static_configs: [{targets: [%q]}]
`, filepath.Join(s.root, "alerts", "vitals.rules.yml"), s.am, s.agent)
	write(t, filepath.Join(s.dir, "prometheus.yml"), prom)
	s.writeAlertmanager(t)
}

// writeCore writes the agent's core.yaml: the bus and the ExtManager
// watching both simulators with 1 s intervals, and extra, more keys of
// core (indented by two spaces).
func (s *stack) writeCore(t *testing.T, extra string) {
	t.Helper()
	pubPort, subPort := e2etest.FreePort(t), e2etest.FreePort(t)
	core := fmt.Sprintf(`core:
  log: {level: info, format: text}
  lifecycle: {watch_config: false}
  api_gateway:
    listen: %s
    plugins:
      message_bus:
        required: true
        publish_address: tcp://127.0.0.1:%d
        subscribe_address: tcp://127.0.0.1:%d
        permissions:
          extmanager:
            publish: ["extmanager.", "health.", "alerts.", "logs."]
            subscribe: ["plugin.", "health.", "extmanager."]
      extmanager:
        directory: ""
        targets:
          - {id: llm, endpoint: "http://%s", kind: auto}
          - {id: ollama, endpoint: "http://%s", kind: auto}
        health:
          interval: 1s
          unhealthy_interval: 1s
          timeout: 2s
          synthetic: true
          # Tokens/s of a synthetic answer needs 8 tokens; Ollama has no
          # counter of its own to give it.
          max_tokens: 8
`, s.agent, pubPort, subPort, s.sims["llm"].addr, s.sims["ollama"].addr)
	write(t, filepath.Join(s.dir, "core.yaml"), core+extra)
}

// writeAlertmanager writes alertmanager.yml.
func (s *stack) writeAlertmanager(t *testing.T) {
	t.Helper()
	// The repository's Alertmanager config, with every receiver sent to
	// the test's webhook and the waits shortened; routes and inhibitions
	// stay as they are.
	b, err := os.ReadFile(filepath.Join(s.root, "alerts", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var am map[string]any
	if err := yaml.Unmarshal(b, &am); err != nil {
		t.Fatal(err)
	}
	hookURL := s.hookURL
	for _, r := range am["receivers"].([]any) {
		rm := r.(map[string]any)
		name := rm["name"].(string)
		for k := range rm {
			if strings.HasSuffix(k, "_configs") {
				delete(rm, k)
			}
		}
		rm["webhook_configs"] = []any{map[string]any{"url": hookURL + "/" + name, "send_resolved": true}}
	}
	var shorten func(route map[string]any)
	shorten = func(route map[string]any) {
		for _, k := range []string{"group_wait", "group_interval"} {
			if _, ok := route[k]; ok {
				route[k] = "1s"
			}
		}
		if rs, ok := route["routes"].([]any); ok {
			for _, r := range rs {
				shorten(r.(map[string]any))
			}
		}
	}
	route := am["route"].(map[string]any)
	shorten(route)
	route["group_wait"], route["group_interval"] = "1s", "1s"
	out, err := yaml.Marshal(am)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.dir, "alertmanager.yml"), string(out))
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newStack builds the agent and the simulator, starts a llama.cpp-shaped
// and an Ollama-shaped simulator and the webhook receiver, and picks the
// addresses of the agent, Prometheus and Alertmanager.
func newStack(ctx context.Context, t *testing.T) *stack {
	t.Helper()
	s := &stack{root: e2etest.RepoRoot(t), dir: t.TempDir(), sims: map[string]*sim{}, hook: &receiver{}}
	hook := httptest.NewServer(s.hook)
	t.Cleanup(hook.Close)
	s.hookURL = hook.URL

	bin := t.TempDir()
	s.vitals = e2etest.Build(ctx, t, bin, "github.com/vitals-dev/vitals/cmd/vitals")
	s.aisim = e2etest.Build(ctx, t, bin, "github.com/vitals-dev/vitals/cmd/aisim")
	s.sims["llm"] = s.startSim(ctx, t, "llamacpp", "127.0.0.1:0")
	s.sims["ollama"] = s.startSim(ctx, t, "ollama", "127.0.0.1:0")
	s.agent, s.prom, s.am = e2etest.Addr(t), e2etest.Addr(t), e2etest.Addr(t)
	return s
}

// startAlertmanager runs Debian's Alertmanager on alertmanager.yml, bound
// to loopback, without clustering.
func (s *stack) startAlertmanager(t *testing.T, bin string) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, bin, "--config.file="+filepath.Join(s.dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(s.dir, "am"), "--web.listen-address="+s.am, "--cluster.listen-address=")
}

func TestStack(t *testing.T) {
	promBin := e2etest.Tool(t, "prometheus")
	amBin := e2etest.Tool(t, "prometheus-alertmanager")
	ctx := t.Context()

	s := newStack(ctx, t)
	s.writeConfigs(t)

	e2etest.Start(t, s.vitals, "--config", filepath.Join(s.dir, "core.yaml"))
	s.startAlertmanager(t, amBin)
	e2etest.Start(t, promBin, "--config.file="+filepath.Join(s.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(s.dir, "prom"), "--web.listen-address="+s.prom)
	e2etest.WaitHTTP(ctx, t, "http://"+s.agent+"/readyz", 60*time.Second)
	e2etest.WaitHTTP(ctx, t, "http://"+s.am+"/-/ready", 60*time.Second)
	e2etest.WaitHTTP(ctx, t, "http://"+s.prom+"/-/ready", 60*time.Second)

	// Both AI plugins healthy, as Prometheus sees them.
	waitQuery(ctx, t, s, `sum(vitals_ai_plugin_health_state{job="vitals", state="healthy"}) == 2`, 90*time.Second)

	t.Run("kill one AI server: unhealthy alert at the webhook", func(t *testing.T) {
		killed := time.Now()
		s.sims["llm"].proc.Kill()
		n, err := s.hook.wait(ctx, 120*time.Second, killed, "VitalsAIPluginUnhealthy", "llm", "firing")
		if err != nil {
			t.Fatal(err)
		}
		d := n.At.Sub(killed)
		t.Logf("kill-to-webhook: %.2f s (goal <= 10 s with 1 s intervals; receiver %s)", d.Seconds(), n.Receiver)
		if n.Receiver != "pager" {
			t.Errorf("critical alert went to %s, want pager", n.Receiver)
		}
		if n.Labels["severity"] != "critical" || n.Labels["job"] != "vitals" {
			t.Errorf("labels %v", n.Labels)
		}
		writeMeasurement(t, d)
	})

	t.Run("restore it: resolved notification", func(t *testing.T) {
		restored := time.Now()
		s.sims["llm"] = s.startSim(ctx, t, "llamacpp", s.sims["llm"].addr)
		n, err := s.hook.wait(ctx, 120*time.Second, restored, "VitalsAIPluginUnhealthy", "llm", "resolved")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restore-to-resolved: %.2f s", n.At.Sub(restored).Seconds())
	})

	t.Run("make the other stuck: one page, stuck, until it recovers", func(t *testing.T) {
		stuck := time.Now()
		s.setKnobs(ctx, t, "ollama", `{"stuck": true}`)
		n, err := s.hook.wait(ctx, 180*time.Second, stuck, "VitalsAIPluginStuck", "ollama", "firing")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stuck-to-webhook: %.2f s", n.At.Sub(stuck).Seconds())
		// The health engine says stuck (not unhealthy), and stuck holds
		// until the engine says healthy again, so the unhealthy alert never
		// pages, not even in the checks between the first good inference
		// and the engine's recovery (group_interval is 1 s here: a gap
		// would show).
		waitQuery(ctx, t, s, `vitals_ai_plugin_health_state{plugin="ollama", state="stuck"} == 1`, 120*time.Second)
		unstuck := time.Now()
		s.setKnobs(ctx, t, "ollama", `{"stuck": false}`)
		if _, err := s.hook.wait(ctx, 120*time.Second, unstuck, "VitalsAIPluginStuck", "ollama", "resolved"); err != nil {
			t.Fatal(err)
		}
		waitQuery(ctx, t, s, `vitals_ai_plugin_health_state{plugin="ollama", state="healthy"} == 1`, 60*time.Second)
		if got := s.hook.count("VitalsAIPluginUnhealthy", "ollama", stuck); got != 0 {
			t.Errorf("the stuck plugin also paged VitalsAIPluginUnhealthy (%d notifications): two pages for one failure", got)
		}
	})

	t.Run("every dashboard query runs against Prometheus", func(t *testing.T) {
		checkDashboards(ctx, t, s)
	})
}

func waitQuery(ctx context.Context, t *testing.T, s *stack, q string, timeout time.Duration) {
	t.Helper()
	err := e2etest.Poll(ctx, timeout, 200*time.Millisecond, q, func(ctx context.Context) error {
		res, err := s.query(ctx, q)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("no result")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeMeasurement appends the kill-to-webhook time to the file named by
// VITALS_E2E_MEASUREMENTS, for BENCHMARKS.
func writeMeasurement(t *testing.T, d time.Duration) {
	path := os.Getenv("VITALS_E2E_MEASUREMENTS")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "kill-to-webhook-seconds %.3f\n", d.Seconds())
}

// metricNames returns every metric a PromQL expression selects.
func metricNames(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return nil
	})
	return out
}

// scraped returns the series names on the agent's /metrics: a
// histogram's are its _bucket, _sum and _count.
func scraped(ctx context.Context, t *testing.T, s *stack) map[string]bool {
	t.Helper()
	b, err := e2etest.Get(ctx, "http://"+s.agent+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for name, f := range e2etest.ParseMetrics(t, b) {
		if len(f.GetMetric()) == 0 {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// defined returns the vitals_ metric names the agent's source defines: a
// counter vector has no series on /metrics until something is counted
// (vitals_bus_dropped_total before a drop), yet it is the agent's.
func defined(t *testing.T, root string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"(vitals_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"agent", "bus", "catalog", "health", "discovery", "probes", "plugins", "exporters", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllSubmatch(b, -1) {
				n := string(m[1])
				out[n] = true
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					out[n+suf] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func checkDashboards(ctx context.Context, t *testing.T, s *stack) {
	qs, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	live := scraped(ctx, t, s)
	known := defined(t, s.root)
	p := parser.NewParser(parser.Options{})
	var empty []string
	for _, q := range qs {
		// The detail dashboard looks at the Ollama-shaped plugin, the one
		// that reports model memory.
		expr := dashboards.Expand(q.Expr, map[string]string{"job": "vitals", "plugin": "ollama"})
		e, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s / %s: parse: %v", q.File, q.Panel, err)
			continue
		}
		allLive := true
		for _, n := range metricNames(e) {
			switch {
			case live[n]:
			case known[n]:
				allLive = false
			default:
				t.Errorf("%s / %s: metric %s is neither on the agent's /metrics nor defined by its source", q.File, q.Panel, n)
			}
		}
		res, err := s.query(ctx, expr)
		if err != nil {
			t.Errorf("%s / %s: %v", q.File, q.Panel, err)
			continue
		}
		switch {
		case len(res) > 0:
		case allLive && !strings.HasPrefix(q.Panel, "annotation "):
			// Every metric has series, so the panel must show something.
			t.Errorf("%s / %s: no data from %s", q.File, q.Panel, expr)
		default:
			// Counters of events that did not happen (bus drops), or an
			// annotation with no transition in its window.
			empty = append(empty, q.File+" / "+q.Panel)
		}
	}
	sort.Strings(empty)
	t.Logf("%d dashboard queries ran; %d returned no data now:\n  %s", len(qs), len(empty), strings.Join(empty, "\n  "))
}
