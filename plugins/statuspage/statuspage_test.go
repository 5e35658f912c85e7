package statuspage

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
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
		{"all keys", "title: Lab\nrefresh: 10s\nhistory: 30\n", ""},
		{"unknown key", "colour: red\n", "colour"},
		{"refresh too short", "refresh: 100ms\n", "refresh"},
		{"history too long", "history: 5000\n", "history"},
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

// start runs the page on a container with a catalog and a health history
// (either may be nil), as the host would.
func start(t *testing.T, cat *catalog.Catalog, hist *health.History, cfg Config) *Page {
	t.Helper()
	ctx := t.Context()
	c := agenttest.NewContainer(t)
	if cat != nil {
		if err := c.Provide(catalog.ServiceName, cat); err != nil {
			t.Fatal(err)
		}
	}
	if hist != nil {
		if err := c.Provide(health.HistoryService, hist); err != nil {
			t.Fatal(err)
		}
	}
	p := New(cfg)
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: c})
	if err := p.Initialize(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := agenttest.Stop(sctx, h, p); err != nil {
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
	now := time.Now()
	hist := newHistory(t)
	hist.Record(health.CheckRecord{Plugin: "llm", Time: now, State: health.StateHealthy, OK: true, Latency: 12300 * time.Microsecond}, nil)
	last := &health.CheckRecord{Plugin: "embedder", Time: now, State: health.StateUnhealthy, Probe: "liveness", Class: probes.ClassRefused}
	cat.SetHealth("llm", health.Status{ID: "llm", State: health.StateHealthy, Checked: now,
		Last: &health.CheckRecord{Plugin: "llm", Time: now, State: health.StateHealthy, OK: true, Latency: 12300 * time.Microsecond}})
	cat.SetHealth("embedder", health.Status{ID: "embedder", State: health.StateUnhealthy, Reason: "GET /health: connection refused <script>",
		Checked: now, Class: probes.ClassRefused, Last: last})

	cfg := DefaultConfig()
	cfg.Title = "Lab"
	p := start(t, cat, hist, cfg)
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
		`<span class="healthy" title=`, // the history strip has the check
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
	p := start(t, nil, nil, DefaultConfig())
	body := get(t, p)
	if !strings.Contains(body, "The ExtManager is not running") || !strings.Contains(body, `id="host-plugins"`) {
		t.Errorf("page without catalog:\n%s", body)
	}
}

// TestStripReadsHistory: the strip shows the last History checks of each
// plugin as the health history holds them, oldest first, whatever the
// plugin's state is now; a plugin without checks has an empty strip.
func TestStripReadsHistory(t *testing.T) {
	cat := catalog.New(nil)
	for _, id := range []string{"llm", "fresh"} {
		if err := cat.Upsert(catalog.Spec{ID: id, Source: catalog.SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	hist := newHistory(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	states := []health.State{health.StateUnknown, health.StateHealthy, health.StateHealthy, health.StateDegraded, health.StateUnhealthy}
	for i, s := range states {
		hist.Record(health.CheckRecord{Plugin: "llm", Seq: int64(i), Time: t0.Add(time.Duration(i) * time.Second), State: s}, nil)
	}
	// The catalog says healthy now; the strip must still show what the
	// checks found, not a sample of the catalog.
	cat.SetHealth("llm", health.Status{ID: "llm", State: health.StateHealthy, Checked: t0})
	cfg := DefaultConfig()
	cfg.History = 3
	body := get(t, start(t, cat, hist, cfg))
	strip := regexp.MustCompile(`<span class="([a-z]+)" title="([0-9:]+) ([a-z]+)"></span>`)
	row := func(id string) string {
		i := strings.Index(body, `data-plugin="`+id+`"`)
		if i < 0 {
			t.Fatalf("page lacks %s", id)
		}
		rest := body[i:]
		if j := strings.Index(rest, "</tr>"); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	var got []string
	for _, m := range strip.FindAllStringSubmatch(row("llm"), -1) {
		got = append(got, m[2]+" "+m[1])
	}
	want := []string{"03:04:02 healthy", "03:04:03 degraded", "03:04:04 unhealthy"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("llm strip = %v, want %v", got, want)
	}
	if n := len(strip.FindAllString(row("fresh"), -1)); n != 0 {
		t.Errorf("fresh has %d checks in its strip, want none", n)
	}
}

// newHistory returns an in-memory health history.
func newHistory(t *testing.T) *health.History {
	t.Helper()
	h, err := health.OpenHistory(t.Context(), nil, health.HistoryConfig{Ring: 16}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestEveryStateHasAColour: each health state has a rule of its own in
// the page's style, so no state renders as an unstyled badge.
func TestEveryStateHasAColour(t *testing.T) {
	b, err := os.ReadFile("page.html.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range health.States {
		re := regexp.MustCompile(`(?m)^[^{\n]*\.` + string(st) + `\b[^{\n]*\{ background: var\(--[a-z]+\)`)
		if !re.Match(b) {
			t.Errorf("state %s has no colour in page.html.tmpl", st)
		}
	}
}
