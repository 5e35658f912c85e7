package statuspage

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(*testing.T) agent.Plugin { return New(DefaultConfig()) }, nil)
}

func TestFactory(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"defaults", "{}", ""},
		{"all keys", "title: Lab\nrefresh: 10s\nsample_interval: 1s\nhistory: 30\n", ""},
		{"unknown key", "colour: red\n", "colour"},
		{"refresh too short", "refresh: 100ms\n", "refresh"},
		{"history too long", "history: 5000\n", "history"},
		{"sample interval too short", "sample_interval: 1ms\n", "sample_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := agent.NewSection(tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Factory(s)
			if tc.err == "" && err != nil {
				t.Fatalf("Factory: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Factory error %v, want one naming %q", err, tc.err)
			}
		})
	}
}

// start runs the page on a container with a catalog, as the host would.
func start(t *testing.T, cat *catalog.Catalog, cfg Config) *Page {
	t.Helper()
	ctx := t.Context()
	c := agenttest.NewContainer(t)
	if cat != nil {
		if err := c.Provide(catalog.ServiceName, cat); err != nil {
			t.Fatal(err)
		}
	}
	p := New(cfg)
	if err := p.Initialize(ctx, c.For(Name)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Stop(sctx); err != nil {
			t.Error(err)
		}
	})
	return p
}

func get(t *testing.T, p *Page) string {
	t.Helper()
	rts := p.Routes()
	if len(rts) != 1 || rts[0].Pattern != "GET /{$}" {
		t.Fatalf("routes %+v", rts)
	}
	mux := http.NewServeMux()
	mux.Handle(rts[0].Pattern, rts[0].Handler)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

func TestPage(t *testing.T) {
	cat := catalog.New(nil)
	for _, s := range []catalog.Spec{
		{ID: "llm", Source: catalog.SourceConfig, Kind: probes.KindLlamaCpp, Endpoint: "http://127.0.0.1:1",
			Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}},
		{ID: "embedder", Source: catalog.SourceConfig, Kind: probes.KindTEI, Endpoint: "http://127.0.0.1:2"},
		{ID: "fresh", Source: catalog.SourceConfig, Kind: probes.KindOllama, Endpoint: "http://127.0.0.1:3"},
	} {
		if err := cat.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	cat.SetHealth("llm", agent.Health{Status: agent.HealthOK, Checked: time.Now(),
		Details: map[string]string{"state": "healthy", "latency_seconds": "0.0123"}})
	cat.SetHealth("embedder", agent.Health{Status: agent.HealthFailing, Message: "GET /health: connection refused <script>",
		Checked: time.Now(), Details: map[string]string{"state": "unhealthy", "error_class": "refused", "failed_probe": "liveness"}})

	cfg := DefaultConfig()
	cfg.Title = "Lab"
	p := start(t, cat, cfg)
	body := get(t, p)
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<title>Lab status</title>`,
		`data-plugin="llm" data-state="healthy"`,
		`data-plugin="embedder" data-state="unhealthy"`,
		`data-plugin="fresh" data-state="unknown"`,
		`<span class="cap">chat</span>`,
		`12.3ms`,
		`liveness refused: GET /health: connection refused &lt;script&gt;`,
		`<span class="healthy" title=`, // the history strip has a sample
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page has an unescaped <script>")
	}
}

func TestPageWithoutExtManager(t *testing.T) {
	p := start(t, nil, DefaultConfig())
	body := get(t, p)
	if !strings.Contains(body, "The ExtManager is not running") || !strings.Contains(body, `id="host-plugins"`) {
		t.Errorf("page without catalog:\n%s", body)
	}
}

// TestHistoryBounded checks that the strip keeps at most History samples
// and forgets plugins that left the catalog.
func TestHistoryBounded(t *testing.T) {
	cat := catalog.New(nil)
	if err := cat.Upsert(catalog.Spec{ID: "llm", Source: catalog.SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.History = 3
	cfg.SampleInterval = agent.Duration(time.Hour) // samples only when the test asks
	p := start(t, cat, cfg)
	for range 10 {
		p.sample(t.Context())
	}
	p.mu.Lock()
	n := len(p.history["llm"])
	p.mu.Unlock()
	if n != 3 {
		t.Errorf("history holds %d samples, want 3", n)
	}
	cat.Reconcile(catalog.SourceConfig, nil, "removed")
	p.sample(t.Context())
	p.mu.Lock()
	_, ok := p.history["llm"]
	p.mu.Unlock()
	if ok {
		t.Error("history kept a plugin that left")
	}
}
