package ratelimiting

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type dir []string

func (d dir) Plugins() []agent.PluginStatus { return nil }

func (d dir) RunningPlugins() []agent.Plugin {
	var out []agent.Plugin
	for _, n := range d {
		out = append(out, agenttest.New(nil, agent.Metadata{Name: n}))
	}
	return out
}

type env struct {
	p   *Plugin
	c   *agent.Container
	clk *clock
	srv *httptest.Server
}

func start(t *testing.T, y string) *env {
	t.Helper()
	s, err := agent.NewSection(y)
	must(t, err)
	pl, err := Factory(s)
	must(t, err)
	e := &env{p: pl.(*Plugin), c: agent.NewContainer(), clk: &clock{t: time.Unix(1_000_000, 0)}}
	e.p.now = e.clk.now
	must(t, e.c.Provide(agent.ServicePlugins, agent.PluginDirectory(dir{"log_consumer"})))
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: e.c})
	ctx := context.Background()
	must(t, e.p.Initialize(ctx, h))
	must(t, e.p.Start(ctx))
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), h, e.p) })
	e.srv = httptest.NewServer(e.p.WrapHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(t *testing.T, path, token string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestProbesAreExempt: by default the agent's probes and the AI plugins'
// readiness endpoints are never limited, so that a kubelet probing many
// pods through one agent does not take them out of rotation.
func TestProbesAreExempt(t *testing.T) {
	e := start(t, "api: {rate: 0.001, burst: 1}\n")
	for i, st := range []struct {
		path string
		code int
	}{
		{"/api/v1/admin/plugins", 200},
		{"/api/v1/admin/plugins", 429},
		{"/readyz", 200},
		{"/livez", 200},
		{"/api/v1/ai-plugins/llm/ready", 200},
		{"/api/v1/ai-plugins/llm/ready", 200},
		{"/api/v1/ai-plugins/llm", 429},
		{"/api/v1/ai-plugins/a/b/ready", 429},
	} {
		if code, _ := e.get(t, st.path, "a"); code != st.code {
			t.Errorf("%d: GET %s: %d, want %d", i, st.path, code, st.code)
		}
	}
}

func TestAPILimitAndRecovery(t *testing.T) {
	e := start(t, "api: {rate: 0.5, burst: 2, exempt_paths: [/livez]}\n")
	steps := []struct {
		name    string
		advance time.Duration
		path    string
		token   string
		code    int
		retry   string
	}{
		{"first", 0, "/api/v1/admin/plugins", "a", 200, ""},
		{"burst", 0, "/api/v1/admin/plugins", "a", 200, ""},
		{"over", 0, "/api/v1/admin/plugins", "a", 429, "2"},
		{"other client unaffected", 0, "/api/v1/admin/plugins", "b", 200, ""},
		{"no token: by address", 0, "/api/v1/admin/plugins", "", 200, ""},
		{"exempt path", 0, "/livez", "a", 200, ""},
		{"still limited after 1s", time.Second, "/api/v1/admin/plugins", "a", 429, "1"},
		{"recovered after 2s", time.Second, "/api/v1/admin/plugins", "a", 200, ""},
		{"one token only", 0, "/api/v1/admin/plugins", "a", 429, "2"},
		{"full burst after a long pause", time.Hour, "/api/v1/admin/plugins", "a", 200, ""},
		{"second of the burst", 0, "/api/v1/admin/plugins", "a", 200, ""},
	}
	for _, st := range steps {
		e.clk.add(st.advance)
		code, h := e.get(t, st.path, st.token)
		if code != st.code || h.Get("Retry-After") != st.retry {
			t.Fatalf("%s: %d Retry-After %q, want %d %q", st.name, code, h.Get("Retry-After"), st.code, st.retry)
		}
		if code == 429 && h.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: 429 is not JSON", st.name)
		}
	}
	if got := testutil.ToFloat64(e.p.m.decisions.WithLabelValues("api", "limited")); got != 3 {
		t.Fatalf("limited = %v, want 3", got)
	}
}

func TestBoundedClients(t *testing.T) {
	e := start(t, "max_clients: 3\nidle_timeout: 1m\n")
	h := e.p.WrapHTTP(http.NotFoundHandler())
	// A bounded load: 200 distinct clients, 4 goroutines.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				req := httptest.NewRequest("GET", "/x", nil)
				req.RemoteAddr = "10.0." + string(rune('0'+g)) + "." + string(rune('a'+i%26)) + ":1"
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		}()
	}
	wg.Wait()
	if n := e.p.api.len(); n > 3 {
		t.Fatalf("%d buckets kept, max 3", n)
	}
	if testutil.ToFloat64(e.p.m.evictions.WithLabelValues("api")) == 0 {
		t.Fatal("no evictions counted")
	}
	e.clk.add(2 * time.Minute)
	e.p.Sweep()
	if n := e.p.api.len(); n != 0 {
		t.Fatalf("%d buckets after idle expiry", n)
	}
	if got := testutil.ToFloat64(e.p.m.clients.WithLabelValues("api")); got != 0 {
		t.Fatalf("clients gauge %v", got)
	}
}

func TestBusFilter(t *testing.T) {
	e := start(t, "bus: {rate: 1, burst: 2}\n")
	f, err := agent.Require[bus.Filter](context.Background(), e.c, bus.RateLimiterService)
	must(t, err)
	for i, tc := range []struct {
		peer, source string
		advance      time.Duration
		limited      bool
	}{
		{"user:gpu", "gpu_probe", 0, false},
		{"user:gpu", "gpu_probe", 0, false},
		{"user:gpu", "gpu_probe", 0, true},
		// A new source each time is the same peer: no fresh bucket.
		{"user:gpu", "gpu_probe_2", 0, true},
		{"user:gpu", "gpu_probe_3", 0, true},
		{"conn:7@127.0.0.1:40000", "gpu_probe", 0, false},
		// Claiming an in-process plugin's name exempts nothing...
		{"conn:7@127.0.0.1:40000", "log_consumer", 0, false},
		{"conn:7@127.0.0.1:40000", "log_consumer", 0, true},
		// ...the agent's own connection is exempt, whatever it claims.
		{bus.PeerAgent, "log_consumer", 0, false},
		{bus.PeerAgent, "gpu_probe", 0, false},
		{bus.PeerAgent, "gpu_probe", 0, false},
		{"user:gpu", "gpu_probe", time.Second, false},
		{"user:gpu", "gpu_probe", 0, true},
	} {
		e.clk.add(tc.advance)
		err := f.FilterMessage(bus.Message{Peer: tc.peer, Source: tc.source, Topic: "logs.info." + tc.source})
		if tc.limited != errors.Is(err, ErrLimited) {
			t.Fatalf("step %d (%s as %s): err = %v, limited want %v", i, tc.peer, tc.source, err, tc.limited)
		}
	}
	if got := testutil.ToFloat64(e.p.m.decisions.WithLabelValues("bus", "limited")); got != 5 {
		t.Fatalf("bus limited = %v", got)
	}
}

func TestReloadChangesRates(t *testing.T) {
	e := start(t, "api: {rate: 1, burst: 1}\n")
	if code, _ := e.get(t, "/x", "a"); code != 200 {
		t.Fatal(code)
	}
	if code, _ := e.get(t, "/x", "a"); code != 429 {
		t.Fatal(code)
	}
	s, _ := agent.NewSection("api: {rate: 1000, burst: 1000}\n")
	must(t, e.p.Reload(context.Background(), s))
	e.clk.add(10 * time.Millisecond)
	if code, _ := e.get(t, "/x", "a"); code != 200 {
		t.Fatalf("after raising the limit: %d", code)
	}
	s, _ = agent.NewSection("idle_timeout: 1h\n")
	if err := e.p.Reload(context.Background(), s); err == nil {
		t.Fatal("idle_timeout change accepted by reload")
	}
}

func TestInvalidConfigs(t *testing.T) {
	agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-rate.yaml":      "api.rate: must be above 0",
		"invalid-burst.yaml":     "bus.burst: must be between 1",
		"invalid-idle.yaml":      "idle_timeout: must be at least 1s",
		"invalid-bus-paths.yaml": "bus.exempt_paths: paths apply to the HTTP API only",
		"invalid-types.yaml":     `api.burst: want an integer, got "x"`,
	})
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		p, err := Factory(agent.Section{})
		must(t, err)
		return p
	}, nil)
}

// TestEveryProblemReported: one run names every bad key of the section,
// decoding and validation alike.
func TestEveryProblemReported(t *testing.T) {
	for text, wants := range map[string][]string{
		"api: {burst: x, rate: many}\nmax_clnts: 3\n": {
			`api.burst: want an integer, got "x"`, `api.rate: want a number, got "many"`,
			`max_clnts: unknown key "max_clnts"; did you mean "max_clients"?`,
		},
		"api: {rate: 0}\nmax_clients: 0\nidle_timeout: 10ms\n": {
			"api.rate: must be above 0", "max_clients: must be between 1", "idle_timeout: must be at least 1s",
		},
	} {
		s, err := agent.NewSection(text)
		must(t, err)
		_, err = Factory(s)
		for _, want := range wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: err = %v, want it to contain %q", text, err, want)
			}
		}
	}
}
