package statuspage

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
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
//	  history: 60               # checks shown per AI plugin (the strip's length)
type Config struct {
	Title   string         `yaml:"title"`
	Refresh agent.Duration `yaml:"refresh"`
	History int            `yaml:"history"`
}

// DefaultConfig returns the defaults a section overrides.
func DefaultConfig() Config {
	return Config{
		Title:   "Vitals",
		Refresh: agent.Duration(5 * time.Second),
		History: 60,
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
	case cfg.History < 1 || cfg.History > 1000:
		return nil, s.Errorf("history", "%d: want 1 to 1000", cfg.History)
	}
	return New(cfg), nil
}

// Page is the plugin. Build it with New or Factory.
type Page struct {
	agent.Base
	cfg Config

	host agent.Host
	dir  agent.PluginDirectory
}

// sample is one check of an AI plugin in the history strip.
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
		cfg: cfg,
	}
}

// Initialize takes the plugin directory and keeps the Host to find the
// catalog while serving.
func (p *Page) Initialize(ctx context.Context, h agent.Host) error {
	dir, err := agent.Require[agent.PluginDirectory](ctx, h, agent.ServicePlugins)
	if err != nil {
		return err
	}
	p.host, p.dir = h, dir
	return nil
}

// Start does nothing: the page reads the catalog and the health history
// when it is asked for.
func (p *Page) Start(context.Context) error { return nil }

// Stop does nothing.
func (p *Page) Stop(context.Context) error { return nil }

// Routes serves the page at the root.
func (p *Page) Routes() []agent.Route {
	return []agent.Route{{Pattern: "GET /{$}", Handler: http.HandlerFunc(p.serve)}}
}

// catalog returns the ExtManager's catalog, or nil when it is not running.
func (p *Page) catalog(ctx context.Context) *catalog.Catalog {
	if p.host == nil {
		return nil
	}
	v, err := p.host.Get(ctx, catalog.ServiceName)
	if err != nil {
		return nil
	}
	cat, _ := v.(*catalog.Catalog)
	return cat
}

// history returns the health engine's history, or nil when the ExtManager
// or its health checks are not running.
func (p *Page) history(ctx context.Context) *health.History {
	if p.host == nil {
		return nil
	}
	v, err := p.host.Get(ctx, health.HistoryService)
	if err != nil {
		return nil
	}
	h, _ := v.(*health.History)
	return h
}

// stateOf returns the health state of a plugin (health.States), lost
// while its heartbeats stopped, or unknown before any verdict.
func stateOf(ap catalog.AIPlugin) string {
	if ap.Presence == catalog.PresenceLost {
		return "lost"
	}
	if ap.Health == nil {
		return string(health.StateUnknown)
	}
	return string(ap.Health.State)
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
		hist := p.history(ctx)
		for _, ap := range cat.List(catalog.Filter{}) {
			av := aiView{
				ID: ap.ID, Kind: string(ap.Kind), Version: ap.Version, Source: string(ap.Source),
				Endpoint: ap.Endpoint, State: stateOf(ap),
			}
			for _, c := range ap.Capabilities {
				av.Capabilities = append(av.Capabilities, string(c))
			}
			if h := ap.Health; h != nil {
				if h.Last != nil {
					av.Latency = formatDuration(h.Last.Latency)
				}
				if h.State != health.StateHealthy {
					av.LastError = lastError(*h)
				}
				if !h.Checked.IsZero() {
					av.Since = h.Checked.Format(time.TimeOnly)
				}
			}
			if hist != nil {
				for _, c := range hist.Recent(ap.ID, p.cfg.History) {
					av.History = append(av.History, sample{State: string(c.State), Time: c.Time})
				}
			}
			counts[av.State]++
			v.AI = append(v.AI, av)
		}
	}
	// Every known state always, then any other (lost, or a state this
	// page does not know yet) when a plugin is in it.
	for _, st := range health.States {
		v.Counts = append(v.Counts, count{State: string(st), N: counts[string(st)]})
		delete(counts, string(st))
	}
	for _, st := range slices.Sorted(maps.Keys(counts)) {
		v.Counts = append(v.Counts, count{State: st, N: counts[st]})
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

// lastError says what the last check found wrong: the probe that failed,
// the error's class and the reason.
func lastError(h health.Status) string {
	var parts []string
	if h.Last != nil && h.Last.Probe != "" {
		parts = append(parts, h.Last.Probe)
	}
	if h.Class != "" {
		parts = append(parts, string(h.Class))
	}
	msg := h.Reason
	if msg == "" {
		msg = string(h.State)
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if len(parts) > 0 {
		return strings.Join(parts, " ") + ": " + msg
	}
	return msg
}

func formatDuration(d time.Duration) string {
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

// page is parsed at the first request, not when the binary starts.
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
		"clock": func(t time.Time) string { return t.Format(time.TimeOnly) },
	}).ParseFS(files, "page.html.tmpl"))
})

func (p *Page) serve(w http.ResponseWriter, r *http.Request) {
	v := p.build(r.Context())
	var b strings.Builder
	if err := page().Execute(&b, v); err != nil {
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
