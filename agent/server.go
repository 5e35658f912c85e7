package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzhttp"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// ServerOptions configures the agent's HTTP front.
type ServerOptions struct {
	Manager  *Manager
	Gatherer prometheus.Gatherer
	// Tracez serves /debug/tracez; nil leaves it out.
	Tracez http.Handler
	// Reload re-reads the config file for POST /api/v1/admin/reload.
	Reload  func(ctx context.Context) error
	Logger  *slog.Logger
	Version string
	// Guard tells which plugin authenticates the front under a config;
	// nil means none does.
	Guard GuardFunc

	metrics *frontMetrics
}

// Server is the agent's HTTP front: /metrics, /livez, /readyz,
// /debug/tracez, the admin API, and the routes of running plugins, wrapped
// in the middleware of running plugins. It rebuilds its routes whenever the
// set of running plugins changes.
//
// Whenever the config enables a guard (the security plugin), every request
// but reads of the guard's open paths is refused with 503 until the guard's
// middleware wraps the routes, and again while the guard is failed,
// stopped or disabled: authentication never fails open, not even while
// the agent starts.
type Server struct {
	o      ServerOptions
	routes atomic.Pointer[routes]
	guard  atomic.Pointer[Guard]
	site   atomic.Pointer[sitePolicy]
	listen string // the listen address of the first config: the socket's
}

// routes is one build of the mux and the middleware around it.
type routes struct {
	h http.Handler
	// middleware names the plugins whose middleware wraps h.
	middleware []string
}

// guardedBy reports whether the named plugin's middleware wraps the routes.
func (rt *routes) guardedBy(name string) bool { return slices.Contains(rt.middleware, name) }

// NewServer builds the HTTP front and keeps it current with the manager.
func NewServer(o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.metrics == nil {
		o.metrics, _ = newFrontMetrics(nil)
	}
	s := &Server{o: o}
	s.rebuild()
	o.Manager.OnChange(s.rebuild)
	return s
}

// configure applies the parts of cfg the front reads: which plugin guards
// it, and the Hosts and Origins it serves. The agent calls it with the loaded config before any plugin runs and
// with each reloaded config; enabling or disabling a plugin over the API
// does not change it, so disabling the guard closes the front.
func (s *Server) configure(cfg *Config) {
	g := Guard{}
	if s.o.Guard != nil && cfg != nil {
		g = s.o.Guard(cfg)
	}
	s.guard.Store(&g)
	if cfg != nil {
		gw := cfg.Core.APIGateway
		if s.listen == "" {
			s.listen = gw.Listen
		}
		gw.Listen = s.listen // a new address takes effect at the next start
		s.site.Store(newSitePolicy(gw))
	}
}

// ServeHTTP serves the current routes, behind the cross-site checks and
// the gate.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := s.site.Load(); p != nil {
		if reason, msg := p.check(r); reason != "" {
			s.o.metrics.rejected.WithLabelValues(reason).Inc()
			WriteError(w, http.StatusForbidden, msg)
			return
		}
	}
	rt := s.routes.Load()
	if msg := s.gateClosed(r, rt); msg != "" {
		w.Header().Set("Retry-After", "5")
		WriteError(w, http.StatusServiceUnavailable, msg)
		return
	}
	rt.h.ServeHTTP(w, r)
}

// MetricsHandler serves g at /metrics: OpenMetrics when the scraper asks
// for it, compressed by compressMetrics; errors of a gather go to log.
// The text formats are written by textExposition, as promhttp writes them
// at less CPU a series; promhttp's handler serves the others (protobuf,
// with native histograms) and requests filtered by name.
func MetricsHandler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	errs := slog.NewLogLogger(log.Handler(), slog.LevelError)
	other := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:           errs,
		EnableOpenMetrics:  true,
		DisableCompression: true, // compressMetrics does
	})
	text := &textExposition{g: g, log: errs}
	formats := expfmt.DefaultOpenMetricsAcceptedFormats()
	return compressMetrics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := expfmt.NegotiateAccept(r.Header, formats...); text.serves(f, r) {
			text.serve(w, f)
			return
		}
		other.ServeHTTP(w, r)
	}))
}

// compressMetrics compresses /metrics answers for a scraper that accepts
// gzip (or zstd), with klauspost/compress's gzhttp at gzip's fastest level
// rather than promhttp's own gzip, the standard library's at its default
// level. On the text of a 1000-target scrape (1.1 MB) that took 12-15 ms
// of CPU, more than a third of the scrape; this takes 1.6-1.9 ms for an
// answer 18 % larger (69 KB instead of 59).
var compressMetrics = func() func(http.Handler) http.HandlerFunc {
	wrap, err := gzhttp.NewWrapper(gzhttp.CompressionLevel(gzip.BestSpeed))
	if err != nil {
		panic(err) // constant options
	}
	return wrap
}()

func (s *Server) rebuild() {
	mux := http.NewServeMux()
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", MetricsHandler(s.o.Gatherer, s.o.Logger))
	}
	// GET patterns answer HEAD too.
	mux.HandleFunc("GET /livez", probeEndpoint("livez", s.liveness))
	mux.HandleFunc("GET /readyz", probeEndpoint("readyz", s.readiness))
	if s.o.Tracez != nil {
		mux.Handle("GET /debug/tracez", s.o.Tracez)
	}
	// Go profiles, as Prometheus serves them; the security plugin's
	// middleware guards them like every other path.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	admin := []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /api/v1/admin/plugins", s.listPlugins},
		{"GET /api/v1/admin/plugins/{name}", s.getPlugin},
		{"POST /api/v1/admin/plugins/{name}/enable", s.toggle(true)},
		{"POST /api/v1/admin/plugins/{name}/disable", s.toggle(false)},
		{"GET /api/v1/admin/health", s.getHealth},
		{"POST /api/v1/admin/reload", s.reload},
	}
	for _, a := range admin {
		mux.HandleFunc(a.pattern, noParams(a.h))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { apiNotFound(mux, w, r) })

	// Routes and middleware of running plugins, in start order. A plugin
	// may serve the root page (a status page); else the host's index does.
	plugins := s.o.Manager.RunningPlugins()
	rootTaken := false
	for _, p := range plugins {
		rp, ok := p.(RouteProvider)
		if !ok {
			continue
		}
		for _, rt := range rp.Routes() {
			if err := register(mux, rt); err != nil {
				s.o.Logger.Error("plugin route not served", "plugin", p.Metadata().Name, "pattern", rt.Pattern, "err", err)
				continue
			}
			if rt.Pattern == "GET /{$}" || rt.Pattern == "/{$}" {
				rootTaken = true
			}
		}
	}
	if !rootTaken {
		mux.HandleFunc("GET /{$}", s.index)
	}
	rt := &routes{h: mux}
	mw := make([]Plugin, 0, len(plugins))
	for _, p := range plugins {
		if _, ok := p.(HTTPMiddleware); ok {
			mw = append(mw, p)
		}
	}
	// Lowest priority number outermost: wrap from the innermost out.
	sort.SliceStable(mw, func(i, j int) bool { return mw[i].Metadata().Priority > mw[j].Metadata().Priority })
	for _, p := range mw {
		rt.h = p.(HTTPMiddleware).WrapHTTP(rt.h)
		rt.middleware = append(rt.middleware, p.Metadata().Name)
	}
	s.routes.Store(rt)
}

// noParams refuses a query on an endpoint that takes none: 400 naming
// the parameter, as every admin endpoint answers a parameter it does not
// know.
func noParams(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if _, err := ParseQuery(r, time.Time{}); err != nil {
				WriteQueryError(w, err)
				return
			}
		}
		h(w, r)
	}
}

// register adds a plugin route, turning ServeMux's panic on a conflicting
// pattern into an error.
func register(mux *http.ServeMux, rt Route) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	if rt.Handler == nil {
		return errors.New("nil handler")
	}
	mux.Handle(rt.Pattern, rt.Handler)
	return nil
}

// apiNotFound answers an /api/ request no route took: 405 with Allow when
// the path exists for other methods, else 404, both as JSON.
func apiNotFound(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	WriteError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Vitals %s\n\n", s.o.Version)
	for _, l := range []string{
		"/metrics                      Prometheus metrics",
		"/livez, /readyz               agent liveness and readiness (?verbose or ?full=1 for each check)",
		"/debug/tracez                 recent spans (zPages)",
		"/debug/pprof/                 Go profiles",
		"/api/v1/admin/plugins         plugin states, timings and errors",
		"/api/v1/admin/health          container-wide health report",
		"POST /api/v1/admin/reload     re-read the config file",
	} {
		fmt.Fprintln(w, l)
	}
}

func (s *Server) listPlugins(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]any{"plugins": s.o.Manager.Plugins()})
}

func (s *Server) getPlugin(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, ok := s.o.Manager.Plugin(r.Context(), name)
	if !ok {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown plugin %q", name))
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (s *Server) toggle(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var err error
		if on {
			err = s.o.Manager.Enable(r.Context(), name)
		} else {
			err = s.o.Manager.Disable(r.Context(), name)
		}
		switch {
		case errors.Is(err, ErrUnknownPlugin):
			WriteError(w, http.StatusNotFound, err.Error())
			return
		case errors.Is(err, ErrConflict):
			WriteError(w, http.StatusConflict, err.Error())
			return
		case err != nil:
			st, _ := s.o.Manager.Plugin(r.Context(), name)
			WriteJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error(), "status": http.StatusInternalServerError, "plugin": st})
			return
		}
		st, _ := s.o.Manager.Plugin(r.Context(), name)
		WriteJSON(w, http.StatusOK, st)
	}
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	type pluginHealth struct {
		Name   string  `json:"name"`
		State  State   `json:"state"`
		Health *Health `json:"health,omitempty"`
	}
	rep := s.o.Manager.Container().Health(r.Context(), 2*time.Second)
	var plugins []pluginHealth
	status := rep.Status
	for _, p := range s.o.Manager.Plugins() {
		if p.State == StateDisabled {
			continue
		}
		full, _ := s.o.Manager.Plugin(r.Context(), p.Name)
		plugins = append(plugins, pluginHealth{Name: p.Name, State: p.State, Health: full.Health})
		if full.Health != nil {
			status = worse(status, full.Health.Status)
		}
	}
	out := map[string]any{"status": status, "ready": true, "plugins": plugins, "services": rep.Services}
	if err := s.o.Manager.Ready(); err != nil {
		out["ready"], out["not_ready_reason"] = false, err.Error()
	}
	WriteJSON(w, http.StatusOK, out)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.o.Reload == nil {
		WriteError(w, http.StatusConflict, "the agent runs on its built-in config; start it with --config to reload")
		return
	}
	if err := s.o.Reload(r.Context()); err != nil {
		var re *ReloadError
		if errors.As(err, &re) && re.Rejected {
			WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{
				"error": "config rejected; the running config stays", "status": http.StatusUnprocessableEntity,
				"problems": re.Problems(),
			})
			return
		}
		WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "reloaded", "plugins": s.o.Manager.Plugins()})
}

type apiError struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// WriteError writes the admin API's JSON error: {"error": msg, "status": code}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, apiError{Error: msg, Status: code})
}

// WriteJSON writes v as indented JSON with the given status.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
