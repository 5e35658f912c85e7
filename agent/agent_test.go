package agent_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

// live is an agent running on loopback from a config file in a temp dir.
type live struct {
	t       *testing.T
	fleet   *agenttest.Fleet
	a       *agent.Agent
	path    string
	base    string
	metrics *prometheus.Registry
	done    chan error
	cancel  context.CancelFunc
	gateway string // more lines of core.api_gateway
}

const liveHeader = "core:\n  lifecycle:\n    step_timeout: 2s\n    stop_timeout: 2s\n    watch_config: %v\n  api_gateway:\n%s    plugins:\n"

func startLive(t *testing.T, watch bool, plugins string) *live {
	t.Helper()
	return startLiveGateway(t, watch, "", plugins)
}

// startLiveGateway is startLive with more lines under core.api_gateway.
func startLiveGateway(t *testing.T, watch bool, gateway, plugins string) *live {
	t.Helper()
	l := &live{t: t, gateway: gateway, fleet: agenttest.NewFleet(map[string]agenttest.Spec{
		"bus":     {Priority: agent.PriorityInfrastructure, Provides: []string{"bus_api"}},
		"auth":    {Priority: agent.PrioritySecurity, NoReload: true},
		"catalog": {Priority: agent.PriorityBusiness, Dependencies: []string{"bus_api"}},
		"extra":   {Priority: agent.PriorityBusiness},
	}), metrics: prometheus.NewRegistry(), done: make(chan error, 1)}
	l.path = filepath.Join(t.TempDir(), "core.yaml")
	l.write(watch, plugins)
	reg := l.fleet.Registry()
	cfg, err := agent.LoadFile(context.Background(), l.path, reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.a, err = agent.New(agent.Options{
		Registry: reg, Config: cfg, ConfigPath: l.path, Env: envconfig.MapLookuper(nil),
		Metrics: l.metrics, Listener: ln, Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	go func() { l.done <- l.a.Run(ctx) }()
	select {
	case <-l.a.Started():
	case err := <-l.done:
		t.Fatalf("agent exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not start")
	}
	l.base = "http://" + ln.Addr().String()
	t.Cleanup(l.stop)
	return l
}

func (l *live) stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	l.cancel = nil
	if err := <-l.done; err != nil {
		l.t.Errorf("agent Run: %v", err)
	}
}

func (l *live) write(watch bool, plugins string) {
	l.t.Helper()
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(liveHeader, watch, l.gateway)+plugins), 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, l.path); err != nil { // as editors and config managers do
		l.t.Fatal(err)
	}
}

func (l *live) do(method, path string) (int, map[string]any) {
	l.t.Helper()
	req, _ := http.NewRequest(method, l.base+path, nil)
	req.Header.Set(agent.CustomHeader, "test") // a program, not a browser form
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if method == http.MethodHead {
		if len(body) > 0 {
			l.t.Fatalf("HEAD %s: a body of %d bytes", path, len(body))
		}
		return resp.StatusCode, nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &out); err != nil {
			l.t.Fatalf("%s %s: bad JSON %q", method, path, body)
		}
	} else {
		out = map[string]any{"text": string(body)}
	}
	return resp.StatusCode, out
}

func (l *live) states() map[string]string {
	out := map[string]string{}
	for _, p := range l.a.Manager().Plugins() {
		out[p.Name] = string(p.State)
	}
	return out
}

func (l *live) waitFor(what string, ok func() bool) {
	l.t.Helper()
	if !agenttest.Within(10*time.Second, ok) {
		l.t.Fatalf("timed out waiting for %s; states %v", what, l.states())
	}
}

const basePlugins = "      bus: {}\n      auth: {}\n      catalog:\n        setting: one\n"

func TestReloadAppliesDifference(t *testing.T) {
	l := startLive(t, false, basePlugins)
	ctx := context.Background()
	since := func(n int) string { return strings.Join(l.fleet.Journal.Entries()[n:], " ") }

	// enable extra
	n := len(l.fleet.Journal.Entries())
	l.write(false, basePlugins+"      extra: {}\n")
	if err := l.a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := since(n); got != "initialize:extra start:extra" {
		t.Errorf("enabling extra ran %q; want only extra's initialize and start", got)
	}

	// change catalog (reloadable) and auth (not reloadable)
	n = len(l.fleet.Journal.Entries())
	l.write(false, "      bus: {}\n      auth:\n        setting: strict\n      catalog:\n        setting: two\n      extra: {}\n")
	if err := l.a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := since(n); got != "stop:auth reload:catalog initialize:auth start:auth" {
		t.Errorf("changing auth and catalog ran %q", got)
	}

	// change bus, which catalog needs: catalog restarts around it
	n = len(l.fleet.Journal.Entries())
	l.fleet.SetFaults("bus", nil)
	l.write(false, "      bus:\n        limit: 2\n      auth:\n        setting: strict\n      catalog:\n        setting: two\n      extra: {}\n")
	if err := l.a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := since(n); got != "reload:bus" {
		t.Errorf("changing bus (reloadable) ran %q", got)
	}

	// disable extra
	n = len(l.fleet.Journal.Entries())
	l.write(false, "      bus:\n        limit: 2\n      auth:\n        setting: strict\n      catalog:\n        setting: two\n")
	if err := l.a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.states(); st["extra"] != "disabled" || since(n) != "stop:extra" {
		t.Errorf("disabling extra: states %v, steps %q", st, since(n))
	}
	if got := testutil.ToFloat64(counter(t, l.metrics, "vitals_config_reloads_total", "success")); got != 4 {
		t.Errorf("successful reloads = %v, want 4", got)
	}
}

func TestReloadRejectsBadConfig(t *testing.T) {
	l := startLive(t, false, basePlugins)
	for name, body := range map[string]string{
		"unknown key":        basePlugins + "      bus_typo: {}\n",
		"bad plugin value":   "      bus: {}\n      auth: {}\n      catalog:\n        limit: -1\n",
		"broken dependency":  "      bus:\n        enabled: false\n      auth: {}\n      catalog: {}\n",
		"not yaml":           "      bus: [\n",
		"plugin wrong types": "      bus:\n        limit: many\n",
		"second document":    basePlugins + "---\ncore: {}\n",
		"nested too deep":    basePlugins + "      extra: " + strings.Repeat("[", 100) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			before := l.fleet.Journal.Entries()
			l.write(false, body)
			err := l.a.Reload(context.Background())
			var re *agent.ReloadError
			if !errors.As(err, &re) || !re.Rejected {
				t.Fatalf("Reload = %v, want a rejection", err)
			}
			if after := l.fleet.Journal.Entries(); len(after) != len(before) {
				t.Errorf("a rejected config ran steps: %v", after[len(before):])
			}
			for p, st := range map[string]string{"bus": "running", "auth": "running", "catalog": "running"} {
				if got := l.states()[p]; got != st {
					t.Errorf("%s = %s after rejection, want %s", p, got, st)
				}
			}
		})
	}
	if got := testutil.ToFloat64(counter(t, l.metrics, "vitals_config_reloads_total", "rejected")); got != 7 {
		t.Errorf("rejected reloads = %v, want 7", got)
	}
	if got := testutil.ToFloat64(gauge(t, l.metrics, "vitals_config_last_reload_successful")); got != 0 {
		t.Errorf("last_reload_successful = %v, want 0", got)
	}
}

func TestFailedPluginReloadIsTriedAgain(t *testing.T) {
	l := startLive(t, false, basePlugins)
	ctx := context.Background()
	running := l.fleet.Latest("catalog") // later builds are throwaway validations
	running.Faults["reload"] = agenttest.Error
	lastOK := func() float64 { return testutil.ToFloat64(gauge(t, l.metrics, "vitals_config_last_reload_successful")) }
	section := func() string {
		var c agenttest.FakeConfig
		if err := l.a.Manager().Config().Plugin("catalog").Section.Decode(&c); err != nil {
			t.Fatal(err)
		}
		return c.Setting
	}

	changed := "      bus: {}\n      auth: {}\n      catalog:\n        setting: two\n"
	l.write(false, changed)
	for i := 1; i <= 2; i++ { // the same file twice: the second must try again
		var re *agent.ReloadError
		if err := l.a.Reload(ctx); !errors.As(err, &re) || re.Rejected {
			t.Fatalf("reload %d with a failing Reload = %v, want a partial failure", i, err)
		}
		if got := lastOK(); got != 0 {
			t.Errorf("reload %d: vitals_config_last_reload_successful = %v, want 0", i, got)
		}
		if got := section(); got != "one" {
			t.Errorf("reload %d: recorded catalog setting %q, want the one it runs, %q", i, got, "one")
		}
	}
	if got := strings.Count(strings.Join(l.fleet.Journal.Entries(), " "), "reload:catalog"); got != 2 {
		t.Errorf("catalog's Reload ran %d times, want 2", got)
	}

	delete(running.Faults, "reload")
	if err := l.a.Reload(ctx); err != nil {
		t.Fatalf("reload after the fault cleared = %v", err)
	}
	if got := lastOK(); got != 1 {
		t.Errorf("vitals_config_last_reload_successful = %v after a good reload, want 1", got)
	}
	if got := section(); got != "two" || running.Reloads() != 1 {
		t.Errorf("recorded setting %q after %d good reloads, want two after 1", got, running.Reloads())
	}
	if err := l.a.Reload(ctx); err != nil || running.Reloads() != 1 {
		t.Errorf("an unchanged file reloaded catalog again (%v, %d reloads)", err, running.Reloads())
	}
}

func TestFailedPluginIsRetriedByReload(t *testing.T) {
	l := startLive(t, false, basePlugins)
	ctx := context.Background()
	lastOK := func() float64 { return testutil.ToFloat64(gauge(t, l.metrics, "vitals_config_last_reload_successful")) }
	l.fleet.SetFaults("extra", map[string]agenttest.Fault{"start": agenttest.Error})
	l.write(false, basePlugins+"      extra: {}\n")
	for i := 1; i <= 2; i++ { // the same file twice: extra is tried again
		var re *agent.ReloadError
		if err := l.a.Reload(ctx); !errors.As(err, &re) || re.Rejected {
			t.Fatalf("reload %d with extra failing = %v, want a partial failure", i, err)
		}
		if got := lastOK(); got != 0 {
			t.Errorf("reload %d: vitals_config_last_reload_successful = %v with extra failed, want 0", i, got)
		}
	}
	l.fleet.SetFaults("extra", nil)
	if err := l.a.Reload(ctx); err != nil {
		t.Fatalf("reload after the fault cleared = %v", err)
	}
	if st := l.states()["extra"]; st != "running" || lastOK() != 1 {
		t.Errorf("extra %s, last_reload_successful %v; want running and 1", st, lastOK())
	}
}

func TestReloadOnFileChange(t *testing.T) {
	l := startLive(t, true, basePlugins)
	l.write(true, basePlugins+"      extra: {}\n")
	l.waitFor("extra to start after the file changed", func() bool { return l.states()["extra"] == "running" })
	l.write(true, basePlugins+"      extra: {}\n      bogus: {}\n")
	l.waitFor("the bad file to be rejected", func() bool {
		return testutil.ToFloat64(counter(t, l.metrics, "vitals_config_reloads_total", "rejected")) == 1
	})
	if l.states()["extra"] != "running" {
		t.Errorf("running config lost after a bad file: %v", l.states())
	}

	// A named pipe in the file's place is rejected at once, not read.
	fifo := l.path + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, l.path); err != nil {
		t.Fatal(err)
	}
	l.waitFor("the named pipe to be rejected", func() bool {
		return testutil.ToFloat64(counter(t, l.metrics, "vitals_config_reloads_total", "rejected")) == 2
	})
	if l.states()["extra"] != "running" {
		t.Errorf("running config lost after a named pipe: %v", l.states())
	}
}

func TestAdminAPI(t *testing.T) {
	l := startLive(t, false, basePlugins+"      extra:\n        enabled: false\n")

	code, body := l.do("GET", "/api/v1/admin/plugins")
	if code != 200 {
		t.Fatalf("plugins: %d %v", code, body)
	}
	var names []string
	for _, p := range body["plugins"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if got := strings.Join(names, ","); got != "bus,auth,catalog,extra" {
		t.Errorf("plugin list order = %s, want start order then disabled", got)
	}

	code, body = l.do("GET", "/api/v1/admin/plugins/catalog")
	if code != 200 || body["state"] != "running" || body["health"].(map[string]any)["status"] != "ok" {
		t.Errorf("catalog: %d %v", code, body)
	}
	if _, ok := body["timings_seconds"].(map[string]any)["start"]; !ok {
		t.Errorf("catalog has no start timing: %v", body)
	}

	tests := []struct {
		method, path string
		code         int
		check        func(map[string]any) string
	}{
		{"GET", "/api/v1/admin/plugins/ghost", 404, errorIs(`unknown plugin "ghost"`)},
		{"POST", "/api/v1/admin/plugins/extra/enable", 200, field("state", "running")},
		{"POST", "/api/v1/admin/plugins/extra/disable", 200, field("state", "disabled")},
		{"POST", "/api/v1/admin/plugins/bus/disable", 409, errorIs("conflict: bus is needed by catalog")},
		{"POST", "/api/v1/admin/plugins/ghost/enable", 404, errorIs(`unknown plugin "ghost"`)},
		{"GET", "/api/v1/admin/plugins/extra/enable", 405, errorIs("method GET not allowed")},
		{"GET", "/api/v1/admin/nothing", 404, errorIs("no endpoint GET /api/v1/admin/nothing")},
		{"GET", "/api/v1/admin/health", 200, field("status", "ok")},
		{"GET", "/api/v1/admin/plugins?verbose=1", 400, errorIs(`unknown parameter "verbose"; this endpoint takes none`)},
		{"POST", "/api/v1/admin/plugins/extra/enable?force=yes", 400, field("parameter", "force")},
		{"POST", "/api/v1/admin/reload", 200, field("status", "reloaded")},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := l.do(tt.method, tt.path)
			if code != tt.code {
				t.Errorf("status %d, want %d: %v", code, tt.code, body)
			}
			if msg := tt.check(body); msg != "" {
				t.Error(msg)
			}
		})
	}

	l.write(false, basePlugins+"      nonsense: {}\n")
	code, body = l.do("POST", "/api/v1/admin/reload")
	if code != 422 || !strings.Contains(fmt.Sprint(body["problems"]), `unknown plugin "nonsense"`) {
		t.Errorf("bad reload: %d %v", code, body)
	}

	for path, want := range map[string]int{"/livez": 200, "/readyz": 200, "/metrics": 200, "/": 200} {
		if code, body := l.do("GET", path); code != want {
			t.Errorf("%s: %d %v", path, code, body)
		}
	}
	if _, body := l.do("GET", "/metrics"); !strings.Contains(body["text"].(string), `vitals_plugin_state{plugin="catalog",state="running"} 1`) {
		t.Error("/metrics lacks the running catalog")
	}
}

func TestReadyzFollowsPolicy(t *testing.T) {
	l := startLive(t, false, basePlugins)
	if code, _ := l.do("GET", "/readyz"); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	// A failing optional plugin keeps the agent ready under "required".
	l.fleet.SetFaults("extra", map[string]agenttest.Fault{"start": agenttest.Error})
	code, _ := l.do("POST", "/api/v1/admin/plugins/extra/enable")
	if code != 500 {
		t.Errorf("enabling a failing plugin: %d, want 500", code)
	}
	if code, body := l.do("GET", "/readyz?full=1"); code != 200 {
		t.Errorf("readyz with a failed optional plugin = %d %v", code, body)
	}
	// Enabling a failed plugin retries it.
	l.fleet.SetFaults("extra", nil)
	if code, body := l.do("POST", "/api/v1/admin/plugins/extra/enable"); code != 200 || body["state"] != "running" {
		t.Errorf("retry: %d %v", code, body)
	}
	l.stop()
	if st := l.states(); st["bus"] != "stopped" || st["catalog"] != "stopped" {
		t.Errorf("after Run returned: %v", st)
	}
}

func errorIs(want string) func(map[string]any) string {
	return func(b map[string]any) string {
		if s, _ := b["error"].(string); !strings.Contains(s, want) {
			return fmt.Sprintf("error = %q, want %q", s, want)
		}
		return ""
	}
}

func field(k, want string) func(map[string]any) string {
	return func(b map[string]any) string {
		if b[k] != want {
			return fmt.Sprintf("%s = %v, want %q (body %v)", k, b[k], want, b)
		}
		return ""
	}
}

func counter(t *testing.T, g prometheus.Gatherer, name, result string) prometheus.Collector {
	return mustVec(t, g, name, map[string]string{"result": result})
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			desc := prometheus.NewDesc(name, "x", nil, nil)
			return constCollector{prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, mf.GetMetric()[0].GetGauge().GetValue())}
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

func TestPluginMayServeRootPage(t *testing.T) {
	l := startLive(t, false, basePlugins)
	if _, body := l.do("GET", "/"); !strings.Contains(body["text"].(string), "Vitals test") {
		t.Fatalf("host index: %v", body)
	}
	for _, p := range l.a.Manager().RunningPlugins() {
		if fp, ok := p.(*agenttest.Plugin); ok && p.Metadata().Name == "catalog" {
			fp.Route, fp.Handler = "GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") })
		}
	}
	// Routes are read when the running set changes.
	if code, _ := l.do("POST", "/api/v1/admin/plugins/extra/enable"); code != 200 {
		t.Fatal("enable extra")
	}
	if _, body := l.do("GET", "/"); body["text"] != "status page" {
		t.Errorf("root = %v, want the plugin's page", body)
	}
}

func TestReadinessCheckerGatesReadyz(t *testing.T) {
	l := startLive(t, false, basePlugins)
	var catalog *agenttest.Plugin
	for _, p := range l.a.Manager().RunningPlugins() {
		if fp, ok := p.(*agenttest.Plugin); ok && p.Metadata().Name == "catalog" {
			catalog = fp
		}
	}
	if catalog == nil {
		t.Fatal("catalog not running")
	}
	catalog.SetNotReady(errors.New("no AI plugin can serve embeddings"))
	code, body := l.do("GET", "/readyz?full=1")
	if code != 503 || body["plugin:catalog"] != "no AI plugin can serve embeddings" {
		t.Errorf("readyz = %d %v", code, body)
	}
	catalog.SetNotReady(nil)
	if code, _ := l.do("GET", "/readyz"); code != 200 {
		t.Errorf("readyz after recovery = %d", code)
	}
}

func TestProbesAnswerHEADAndNameEachCheck(t *testing.T) {
	l := startLive(t, false, basePlugins)
	for _, path := range []string{"/livez", "/readyz", "/readyz?verbose", "/livez?full=1"} {
		if code, _ := l.do("HEAD", path); code != 200 {
			t.Errorf("HEAD %s = %d, want 200", path, code)
		}
	}
	if _, body := l.do("GET", "/readyz?verbose"); !strings.Contains(body["text"].(string), "[+]plugin:catalog ok\n") ||
		!strings.HasSuffix(body["text"].(string), "readyz check passed\n") {
		t.Errorf("verbose readyz when ready: %q", body["text"])
	}

	// One plugin not ready by its own word, one optional plugin failed.
	var catalog *agenttest.Plugin
	for _, p := range l.a.Manager().RunningPlugins() {
		if fp, ok := p.(*agenttest.Plugin); ok && p.Metadata().Name == "catalog" {
			catalog = fp
		}
	}
	catalog.SetNotReady(errors.New("no AI plugin can serve embeddings"))
	l.fleet.SetFaults("extra", map[string]agenttest.Fault{"start": agenttest.Error})
	if code, _ := l.do("POST", "/api/v1/admin/plugins/extra/enable"); code != 500 {
		t.Fatalf("enabling a failing plugin: %d", code)
	}
	if code, _ := l.do("HEAD", "/readyz"); code != 503 {
		t.Errorf("HEAD /readyz = %d, want 503", code)
	}
	code, body := l.do("GET", "/readyz?verbose")
	text, _ := body["text"].(string)
	for _, want := range []string{
		"[+]goroutines ok\n",
		"[+]plugin:bus ok\n",
		"[-]plugin:catalog no AI plugin can serve embeddings\n",
		"[+]plugin:extra failed: extra start: injected failure (optional; not counted under readiness: required)\n",
		"readyz check failed\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("verbose readyz lacks %q:\n%s", want, text)
		}
	}
	if code != 503 {
		t.Errorf("verbose readyz = %d", code)
	}
	_, body = l.do("GET", "/readyz?full=1")
	if body["plugin:catalog"] != "no AI plugin can serve embeddings" || body["plugin:extra"] != "failed: extra start: injected failure" || body["plugin:bus"] != "OK" {
		t.Errorf("full readyz: %v", body)
	}
	// Without a parameter the body still names what is not ready.
	if _, body = l.do("GET", "/readyz"); len(body) != 1 || body["plugin:catalog"] == nil {
		t.Errorf("plain readyz: %v", body)
	}
}

// TestMetricsCompression: /metrics answers a scrape as Prometheus makes it
// (OpenMetrics, gzip) compressed, in the format it asked for, and one that
// accepts no encoding in plain text; both decode to the same families.
func TestMetricsCompression(t *testing.T) {
	l := startLive(t, false, basePlugins)
	get := func(encoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, l.base+"/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
		if encoding != "" {
			req.Header.Set("Accept-Encoding", encoding)
		}
		// A transport that leaves Accept-Encoding and the body as they are.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	families := func(body []byte) map[string]bool {
		t.Helper()
		out := map[string]bool{}
		for _, line := range strings.Split(string(body), "\n") {
			if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
				out[strings.Fields(name)[0]] = true
			}
		}
		return out
	}
	zipped, zbody := get("gzip")
	plain, pbody := get("")
	if ce := zipped.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q with gzip accepted, want gzip", ce)
	}
	if ce := plain.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("Content-Encoding %q with none accepted, want none", ce)
	}
	for _, r := range []*http.Response{zipped, plain} {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Errorf("Content-Type %q, want OpenMetrics", ct)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(zbody))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	zf, pf := families(unzipped), families(pbody)
	if !zf["vitals_plugin_state"] || len(zf) != len(pf) || !strings.HasSuffix(string(unzipped), "# EOF\n") {
		t.Errorf("gzip answer: %d families (vitals_plugin_state %v, ends in # EOF: %v), plain one %d",
			len(zf), zf["vitals_plugin_state"], strings.HasSuffix(string(unzipped), "# EOF\n"), len(pf))
	}
}
