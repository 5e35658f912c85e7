package statuspage

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
)

// Name is the plugin's name in core.yaml.
const Name = "status_page"

// Version of the plugin.
const Version = "0.1.0"

// Config is the plugin's section of core.yaml:
//
//	status_page:
//	  title: Vitals             # the page's heading
//	  refresh: 5s               # the page reloads itself this often
//	  sample_interval: 5s       # how often the history strip samples each AI plugin's state
//	  history: 60               # samples kept per AI plugin (the strip's length)
type Config struct {
	Title          string         `yaml:"title"`
	Refresh        agent.Duration `yaml:"refresh"`
	SampleInterval agent.Duration `yaml:"sample_interval"`
	History        int            `yaml:"history"`
}

// DefaultConfig returns the defaults a section overrides.
func DefaultConfig() Config {
	return Config{
		Title:          "Vitals",
		Refresh:        agent.Duration(5 * time.Second),
		SampleInterval: agent.Duration(5 * time.Second),
		History:        60,
	}
}

// Factory builds the plugin from its section.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	switch {
	case cfg.Refresh.D() < time.Second:
		return nil, s.Errorf("refresh", "%s: want at least 1s", cfg.Refresh)
	case cfg.SampleInterval.D() < 100*time.Millisecond:
		return nil, s.Errorf("sample_interval", "%s: want at least 100ms", cfg.SampleInterval)
	case cfg.History < 1 || cfg.History > 1000:
		return nil, s.Errorf("history", "%d: want 1 to 1000", cfg.History)
	}
	return New(cfg), nil
}

// Page is the plugin. Build it with New or Factory.
type Page struct {
	agent.Base
	cfg Config

	c   *agent.Container
	dir agent.PluginDirectory

	mu      sync.Mutex
	history map[string][]sample

	stopMu sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// sample is one AI plugin's state at one time.
type sample struct {
	State string
	Time  time.Time
}

// New returns the plugin with cfg.
func New(cfg Config) *Page {
	return &Page{
		Base: agent.NewBase(agent.Metadata{
			Name: Name, Version: Version, Priority: agent.PriorityBusiness,
			Description: "the built-in status page at /: AI plugins and host plugins at a glance",
			// The catalog is read when it is there, not required: the
			// page shows the host plugins without the ExtManager.
			Dependencies: []string{agent.ServicePlugins},
		}),
		cfg:     cfg,
		history: map[string][]sample{},
	}
}

// Initialize takes the plugin directory and keeps the container to find
// the catalog while serving.
func (p *Page) Initialize(ctx context.Context, c *agent.Container) error {
	dir, err := agent.Require[agent.PluginDirectory](ctx, c, agent.ServicePlugins)
	if err != nil {
		return err
	}
	p.c, p.dir = c, dir
	return nil
}

// Start runs the sampler of the history strip.
func (p *Page) Start(context.Context) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.sampleLoop(ctx, p.done)
	return nil
}

// Stop ends the sampler. It is safe without Start and safe twice.
func (p *Page) Stop(ctx context.Context) error {
	p.stopMu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel = nil
	p.stopMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("status_page stop: %w", ctx.Err())
	}
}

// Routes serves the page at the root.
func (p *Page) Routes() []agent.Route {
	return []agent.Route{{Pattern: "GET /{$}", Handler: http.HandlerFunc(p.serve)}}
}

func (p *Page) sampleLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.cfg.SampleInterval.D())
	defer t.Stop()
	for {
		p.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// catalog returns the ExtManager's catalog, or nil when it is not running.
func (p *Page) catalog(ctx context.Context) *catalog.Catalog {
	if p.c == nil {
		return nil
	}
	v, err := p.c.Get(ctx, catalog.ServiceName)
	if err != nil {
		return nil
	}
	cat, _ := v.(*catalog.Catalog)
	return cat
}

// sample records every AI plugin's state now, and forgets plugins that left.
func (p *Page) sample(ctx context.Context) {
	cat := p.catalog(ctx)
	var list []catalog.AIPlugin
	if cat != nil {
		list = cat.List(catalog.Filter{})
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, ap := range list {
		seen[ap.ID] = true
		h := append(p.history[ap.ID], sample{State: stateOf(ap), Time: now})
		if len(h) > p.cfg.History {
			h = h[len(h)-p.cfg.History:]
		}
		p.history[ap.ID] = h
	}
	for id := range p.history {
		if !seen[id] {
			delete(p.history, id)
		}
	}
}

// stateOf returns the health engine's state of a plugin (unknown, healthy,
// degraded, unhealthy), or one derived from its health status.
func stateOf(ap catalog.AIPlugin) string {
	if ap.Presence == catalog.PresenceLost {
		return "lost"
	}
	h := ap.Health
	if h == nil {
		return "unknown"
	}
	if s := h.Details["state"]; s != "" {
		return s
	}
	switch h.Status {
	case agent.HealthOK:
		return "healthy"
	case agent.HealthDegraded:
		return "degraded"
	case agent.HealthFailing:
		return "unhealthy"
	}
	return "unknown"
}

// view is what the template renders.
type view struct {
	Title     string
	Refresh   int
	Generated time.Time
	Catalog   bool
	AI        []aiView
	Counts    []count
	Host      []hostView
	HostOK    int
}

type count struct {
	State string
	N     int
}

type aiView struct {
	ID, Kind, Version, Source, Endpoint string
	State                               string
	Capabilities                        []string
	Latency                             string
	LastError                           string
	Since                               string
	History                             []sample
}

type hostView struct {
	Name, Version, Priority, State, Since, LastError string
	Required                                         bool
}

func (p *Page) build(ctx context.Context) view {
	v := view{Title: p.cfg.Title, Refresh: int(p.cfg.Refresh.D().Seconds()), Generated: time.Now()}
	counts := map[string]int{}
	if cat := p.catalog(ctx); cat != nil {
		v.Catalog = true
		p.mu.Lock()
		for _, ap := range cat.List(catalog.Filter{}) {
			av := aiView{
				ID: ap.ID, Kind: string(ap.Kind), Version: ap.Version, Source: string(ap.Source),
				Endpoint: ap.Endpoint, State: stateOf(ap),
				History: append([]sample(nil), p.history[ap.ID]...),
			}
			for _, c := range ap.Capabilities {
				av.Capabilities = append(av.Capabilities, string(c))
			}
			if h := ap.Health; h != nil {
				if s, err := strconv.ParseFloat(h.Details["latency_seconds"], 64); err == nil {
					av.Latency = formatSeconds(s)
				}
				if h.Status != agent.HealthOK {
					av.LastError = lastError(*h)
				}
				if !h.Checked.IsZero() {
					av.Since = h.Checked.Format(time.TimeOnly)
				}
			}
			counts[av.State]++
			v.AI = append(v.AI, av)
		}
		p.mu.Unlock()
	}
	for _, s := range []string{"healthy", "degraded", "unhealthy", "unknown", "lost"} {
		if counts[s] > 0 || s != "lost" {
			v.Counts = append(v.Counts, count{State: s, N: counts[s]})
		}
	}
	if p.dir != nil {
		for _, ps := range p.dir.Plugins() {
			hv := hostView{
				Name: ps.Name, Version: ps.Version, Priority: priority(ps.Priority),
				State: string(ps.State), LastError: ps.LastError, Required: ps.Required,
			}
			if !ps.Since.IsZero() {
				hv.Since = ps.Since.Format(time.DateTime)
			}
			if ps.State == agent.StateRunning {
				v.HostOK++
			}
			v.Host = append(v.Host, hv)
		}
		sort.SliceStable(v.Host, func(i, j int) bool { return rank(v.Host[i].State) < rank(v.Host[j].State) })
	}
	return v
}

// rank puts failed host plugins first, then running, then the rest.
func rank(s string) int {
	switch agent.State(s) {
	case agent.StateFailed:
		return 0
	case agent.StateRunning:
		return 1
	}
	return 2
}

func lastError(h agent.Health) string {
	var parts []string
	if p := h.Details["failed_probe"]; p != "" {
		parts = append(parts, p)
	}
	if c := h.Details["error_class"]; c != "" {
		parts = append(parts, c)
	}
	msg := h.Message
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if len(parts) > 0 {
		return strings.Join(parts, " ") + ": " + msg
	}
	return msg
}

func formatSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(100 * time.Millisecond).String()
}

//go:embed page.html.tmpl
var files embed.FS

var page = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"clock": func(t time.Time) string { return t.Format(time.TimeOnly) },
}).ParseFS(files, "page.html.tmpl"))

func (p *Page) serve(w http.ResponseWriter, r *http.Request) {
	v := p.build(r.Context())
	var b strings.Builder
	if err := page.Execute(&b, v); err != nil {
		agent.WriteError(w, http.StatusInternalServerError, "status page: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(b.String()))
}

var (
	_ agent.Plugin        = (*Page)(nil)
	_ agent.RouteProvider = (*Page)(nil)
	_ agent.Factory       = Factory
)

// priority names a plugin's priority band, or "–" when it is not known (a
// disabled plugin whose section cannot be built).
func priority(p agent.Priority) string {
	if p == 0 {
		return "–"
	}
	return p.String()
}
