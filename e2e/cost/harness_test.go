//go:build bench

package cost

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/procfs"

	"github.com/vitals-dev/vitals/e2e/e2etest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// binDir holds the binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vitals-cost-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builds holds the binaries built for this run, by build tags.
var builds struct {
	mu   sync.Mutex
	bins map[string]*built
}

type built struct {
	once sync.Once
	path string
	err  error
}

// vitalsBin builds cmd/vitals once per run as the Dockerfile builds it:
// static, trimmed, without symbols; with tags ("nokubernetes"), the
// build the tags name.
func vitalsBin(t *testing.T, tags string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*built{}
	}
	b := builds.bins[tags]
	if b == nil {
		b = &built{}
		builds.bins[tags] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(binDir, "vitals")
		args := []string{"build", "-trimpath", "-ldflags", "-s -w"}
		if tags != "" {
			b.path += "-" + tags
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, "-o", b.path, "./cmd/vitals")...)
		cmd.Dir = e2etest.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s ./cmd/vitals: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// envDuration reads a duration from the environment, bounded.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > 2*time.Hour {
		t.Fatalf("%s=%q: want a duration up to 2h", name, v)
	}
	return d
}

func envInt(t *testing.T, name string, def, lo, hi int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Fatalf("%s=%q: want %d to %d", name, v, lo, hi)
	}
	return n
}

// sim is a simulated OpenAI-compatible server on loopback that counts the
// liveness requests (GET /v1/models) it answers.
type sim struct {
	url  string
	urls []string
	reqs atomic.Int64
}

// startSim serves an aisim openai server; without keepAlive it closes
// every connection after one answer, so every client opens a new one.
func startSim(t *testing.T, keepAlive bool) *sim { return startSims(t, keepAlive, 1) }

// startSims is startSim on n listeners, n servers to a client: urls lists
// them, url is the first.
func startSims(t *testing.T, keepAlive bool, n int) *sim {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI})
	if err != nil {
		t.Fatal(err)
	}
	x := &sim{}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			x.reqs.Add(1)
		}
		s.ServeHTTP(w, r)
	})}
	srv.SetKeepAlivesEnabled(keepAlive)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		x.urls = append(x.urls, "http://"+ln.Addr().String())
		go func() { _ = srv.Serve(ln) }()
	}
	x.url = x.urls[0]
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return x
}

// proc is a process the benchmark watches.
type proc struct {
	*e2etest.Proc
	pid  int
	base string // http://host:port of its HTTP listener
}

// cpu returns the process's user+system CPU seconds.
func (p *proc) cpu(t *testing.T) float64 {
	t.Helper()
	v, err := e2etest.ProcCPU(p.pid)
	if err != nil {
		t.Fatalf("%s: %v\n%s", p.Name, err, p.Output())
	}
	return v
}

// status returns the process's /proc/<pid>/status.
func (p *proc) status(t *testing.T) procfs.ProcStatus {
	t.Helper()
	st, err := e2etest.ProcStatus(p.pid)
	if err != nil {
		t.Fatalf("%s: %v\n%s", p.Name, err, p.Output())
	}
	return st
}

func start(t *testing.T, ready string, addr, name string, args ...string) *proc {
	t.Helper()
	p := e2etest.Start(t, name, args...)
	e2etest.WaitHTTP(context.Background(), t, "http://"+addr+ready, 60*time.Second)
	return &proc{Proc: p, pid: p.Cmd.Process.Pid, base: "http://" + addr}
}

// agentSpec is one agent's targets and health settings.
type agentSpec struct {
	targets  int
	endpoint string
	// endpoints, when set, are the targets' servers in turn, in place of
	// endpoint.
	endpoints []string
	// health is the flow mapping of the extmanager's health key.
	health string
	// discovered lists the targets in a file_sd_configs file, not in the
	// config.
	discovered bool
	// tags are the build tags of the binary: "" is the shipped build.
	tags string
	// bin, when set, is the binary to run in place of the one built (an
	// earlier build, to compare against in the same window).
	bin string
}

// The most targets one config file and one manifest directory hold.
const maxConfigTargets, maxManifests = 4000, 1000

// startAgent starts the shipped binary with only the ExtManager, its
// targets all on one server (the ids differ; the agent checks each on its
// own, as it would servers behind one address).
func startAgent(t *testing.T, a agentSpec) *proc {
	t.Helper()
	endpoint := func(i int) string {
		if len(a.endpoints) > 0 {
			return a.endpoints[i%len(a.endpoints)]
		}
		return a.endpoint
	}
	dir := t.TempDir()
	addr := e2etest.Addr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "core:\n  log: {level: warn}\n  lifecycle: {watch_config: false}\n  api_gateway:\n    listen: %s\n    plugins:\n      extmanager:\n", addr)
	health := a.health
	if extra := os.Getenv("COST_HEALTH"); extra != "" {
		// More health keys, for experiments: COST_HEALTH='slack: 50ms'.
		health = strings.TrimSuffix(health, "}") + ", " + extra + "}"
	}
	// A config file holds at most 20 000 keys and list items, a directory
	// 1000 manifests: past 4000 targets the rest go in manifests, or, with
	// discovered, all in a file_sd file.
	inConfig := min(a.targets, maxConfigTargets)
	if a.discovered {
		inConfig = 0
		var groups []string
		for i := range a.targets {
			groups = append(groups, fmt.Sprintf(`{"targets":[%q],"labels":{"__vitals_kind__":"openai","__vitals_id__":"t%05d"}}`,
				strings.TrimPrefix(endpoint(i), "http://"), i))
		}
		if err := os.WriteFile(filepath.Join(dir, "targets.json"), []byte("["+strings.Join(groups, ",\n")+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b.WriteString("        file_sd_configs: [{files: [targets.json]}]\n        directory: \"\"\n")
	} else if rest := a.targets - inConfig; rest > 0 {
		if rest > maxManifests {
			t.Fatalf("%d targets: at most %d fit in one config file and its manifest directory", a.targets, maxConfigTargets+maxManifests)
		}
		if err := os.Mkdir(filepath.Join(dir, "plugins.d"), 0o700); err != nil {
			t.Fatal(err)
		}
		for i := inConfig; i < a.targets; i++ {
			m := fmt.Sprintf("endpoint: %q\nkind: openai\n", endpoint(i))
			if err := os.WriteFile(filepath.Join(dir, "plugins.d", fmt.Sprintf("t%05d.yaml", i)), []byte(m), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b.WriteString("        directory: plugins.d\n")
	} else {
		b.WriteString("        directory: \"\"\n")
	}
	fmt.Fprintf(&b, "        bus: {enabled: false}\n        health: %s\n        targets:", health)
	if inConfig == 0 {
		b.WriteString(" []\n")
	} else {
		b.WriteString("\n")
	}
	for i := range inConfig {
		fmt.Fprintf(&b, "          - {id: t%05d, endpoint: %q, kind: openai}\n", i, endpoint(i))
	}
	cfg := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := a.bin
	if bin == "" {
		bin = vitalsBin(t, a.tags)
	}
	args := []string{bin, "--config", cfg}
	if env := strings.Fields(os.Getenv("COST_AGENT_ENV")); len(env) > 0 {
		// The agents' own environment, for runtime settings:
		// COST_AGENT_ENV='GOGC=50'. env(1) execs the agent in its place.
		args = append(append([]string{"/usr/bin/env"}, env...), args...)
	}
	return start(t, "/readyz", addr, args[0], args[1:]...)
}

// startBlackbox starts Debian's blackbox_exporter with one http_2xx module.
func startBlackbox(t *testing.T) *proc {
	t.Helper()
	bb := e2etest.Tool(t, "prometheus-blackbox-exporter")
	cfg := filepath.Join(t.TempDir(), "blackbox.yml")
	if err := os.WriteFile(cfg, []byte("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2etest.Addr(t)
	return start(t, "/metrics", addr, bb, "--config.file="+cfg, "--web.listen-address="+addr, "--log.level=error")
}

// scrapeJob is one job of a Prometheus config.
type scrapeJob struct {
	name     string
	interval time.Duration
	// targets are scraped at /metrics, or through blackbox at /probe.
	targets  []string
	blackbox string // host:port of a blackbox_exporter: targets are probed through it
}

// startPrometheus starts Debian's Prometheus with the jobs.
func startPrometheus(t *testing.T, jobs ...scrapeJob) *proc {
	t.Helper()
	bin := e2etest.Tool(t, "prometheus")
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("global: {evaluation_interval: 1m}\nscrape_configs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n    scrape_interval: %s\n    scrape_timeout: %s\n", j.name, j.interval, j.interval)
		if j.blackbox != "" {
			b.WriteString("    metrics_path: /probe\n    params: {module: [http_2xx]}\n")
			fmt.Fprintf(&b, "    relabel_configs:\n      - {source_labels: [__address__], target_label: __param_target}\n"+
				"      - {source_labels: [__param_target], target_label: instance}\n      - {target_label: __address__, replacement: %q}\n", j.blackbox)
		}
		b.WriteString("    static_configs:\n      - targets:\n")
		for _, tg := range j.targets {
			fmt.Fprintf(&b, "          - %q\n", tg)
		}
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := e2etest.Addr(t)
	return start(t, "/-/ready", addr, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
}

// blackboxTargets are n distinct probe URLs on one server, so Prometheus
// has n targets as the agent has n.
func blackboxTargets(server string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/v1/models?t=%05d", server, i)
	}
	return out
}

// query evaluates an instant PromQL query and returns its single value.
func query(t *testing.T, prom *proc, q string) float64 {
	t.Helper()
	body, err := e2etest.Get(context.Background(), prom.base+"/api/v1/query?query="+urlEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	// {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"100"]}]}}
	s := string(body)
	i := strings.LastIndex(s, `,"`)
	j := strings.LastIndex(s, `"]`)
	if i < 0 || j < i {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(s[i+2:j], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// exposition is one scrape of an agent's /metrics in the text format,
// parsed by expfmt.
type exposition struct {
	body []byte
	fams e2etest.Metrics
}

func scrape(t *testing.T, a *proc) exposition {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.base+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return exposition{body: b, fams: e2etest.ParseMetrics(t, b)}
}

// labelText is a series' labels as the text format writes them, sorted
// by name: probe="liveness",result="success".
func labelText(m *dto.Metric) string {
	ls := m.GetLabel()
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// sum adds the values of the series of name whose labels contain every
// one of want (`probe="liveness"`).
func (e exposition) sum(name string, want ...string) float64 {
	var s float64
	for _, m := range e.fams[name].GetMetric() {
		labels := labelText(m)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(labels, w)
		}
		if ok {
			s += e2etest.Value(m)
		}
	}
	return s
}

// buckets returns the cumulative counts of histogram name by upper bound,
// summed over its series.
func (e exposition) buckets(name string) map[float64]float64 {
	out := map[float64]float64{}
	for _, m := range e.fams[name].GetMetric() {
		h := m.GetHistogram()
		inf := false
		for _, b := range h.GetBucket() {
			out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf {
			out[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	return out
}

// series counts the series whose labels contain label, as Prometheus
// counts them: a histogram's buckets, _sum and _count are a series each.
func (e exposition) series(label string) int {
	n := 0
	for _, f := range e.fams {
		for _, m := range f.GetMetric() {
			if !strings.Contains(labelText(m), label) {
				continue
			}
			switch {
			case m.Histogram != nil:
				n += len(m.Histogram.GetBucket()) + 2
				if b := m.Histogram.GetBucket(); len(b) == 0 || !math.IsInf(b[len(b)-1].GetUpperBound(), 1) {
					n++ // +Inf, which the parser keeps as the sample count
				}
			case m.Summary != nil:
				n += len(m.Summary.GetQuantile()) + 2
			default:
				n++
			}
		}
	}
	return n
}

// between returns how many observations fell between two scrapes of a
// histogram's cumulative buckets (by bound), and the bounds in order.
func between(before, after map[float64]float64) (total float64, bounds []float64) {
	bounds = slices.Sorted(maps.Keys(after))
	return after[math.Inf(1)] - before[math.Inf(1)], bounds
}

// quantileBound returns the smallest bucket bound at or under which a
// fraction q of the observations between two scrapes fell.
func quantileBound(before, after map[float64]float64, q float64) float64 {
	total, bounds := between(before, after)
	if total <= 0 {
		return math.NaN()
	}
	for _, b := range bounds {
		if after[b]-before[b] >= q*total {
			return b
		}
	}
	return math.Inf(1)
}

func mib(v int64) float64 { return float64(v) / (1 << 20) }

// profile saves a CPU profile of the agent over d to COST_PROFILE/name,
// when COST_PROFILE names a directory; it returns at once and the caller
// waits on the returned function.
func profile(t *testing.T, a *proc, name string, d time.Duration) func() {
	dir := os.Getenv("COST_PROFILE")
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(1, int(d/time.Second))
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", a.base, secs))
		if err != nil {
			t.Errorf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("profile %s: %s %v", name, resp.Status, err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Error(err)
		}
	}()
	return func() { <-done }
}

func numCPU() int { return runtime.NumCPU() }

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// saveHeap saves the agent's heap profile to COST_PROFILE/name when
// COST_PROFILE names a directory.
func saveHeap(t *testing.T, a *proc, name string) {
	dir := os.Getenv("COST_PROFILE")
	if dir == "" {
		return
	}
	b, err := e2etest.Get(context.Background(), a.base+"/debug/pprof/heap?gc=1")
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Error(err)
	}
}

// saveFile copies path to COST_PROFILE/name when COST_PROFILE names a
// directory.
func saveFile(t *testing.T, path, name string) {
	dir := os.Getenv("COST_PROFILE")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("save %s: %v", path, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Error(err)
	}
}

// saveURL saves the body of a GET to COST_PROFILE/name when COST_PROFILE
// names a directory.
func saveURL(t *testing.T, url, name string) {
	dir := os.Getenv("COST_PROFILE")
	if dir == "" {
		return
	}
	b, err := e2etest.Get(context.Background(), url)
	if err != nil {
		t.Errorf("save %s: %v", url, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Error(err)
	}
}
