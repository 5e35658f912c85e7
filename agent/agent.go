package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/exporters/alertmanager"
	"github.com/vitals-dev/vitals/internal/dirwatch"
)

// Options configures an Agent.
type Options struct {
	Registry *Registry
	// Config is the config to start with, already loaded.
	Config *Config
	// ConfigPath is the file Config came from; reloads re-read it. Empty
	// means a built-in config that cannot be reloaded from a file.
	ConfigPath string
	// Env looks up VITALS_ overrides on reload; nil means the process
	// environment.
	Env    envconfig.Lookuper
	Logger *slog.Logger
	// LogLevel, when set, follows core.log.level across reloads.
	LogLevel       *slog.LevelVar
	TracerProvider trace.TracerProvider
	// Tracez serves /debug/tracez.
	Tracez http.Handler
	// Metrics is the registry behind /metrics; nil means a new one.
	Metrics *prometheus.Registry
	Version string
	// Listener, when set, is used instead of listening on the config's
	// address (tests pass 127.0.0.1:0).
	Listener net.Listener
	// Guard tells which plugin authenticates the HTTP front under a config
	// (security.Guard); while the config enables it and it is not in
	// front, the front refuses every request but reads of its open paths.
	// Nil means nothing guards the front.
	Guard GuardFunc
}

// Agent is a running Vitals agent: its HTTP front, its lifecycle manager
// and its config source.
type Agent struct {
	o       Options
	log     *slog.Logger
	manager *Manager
	server  *Server
	metrics *HostMetrics
	// gatherer is o.Metrics with the plugins' SelfGatherers: what
	// /metrics and the alert rules read.
	gatherer *MetricsRegistry

	reloadMu sync.Mutex // one reload at a time; guards lastHash
	lastHash [32]byte

	alertMetrics *alertmanager.Metrics
	alertMu      sync.Mutex // guards pusher
	pusher       *pusher
	listenAddr   string

	ready chan struct{}
}

// ReloadError is a reload that failed. Rejected means the new config was
// invalid and nothing changed; otherwise it was applied and some plugins
// failed.
type ReloadError struct {
	Rejected bool
	Err      error
}

func (e *ReloadError) Error() string {
	if e.Rejected {
		return "config rejected, running config kept: " + e.Err.Error()
	}
	return "config applied with failures: " + e.Err.Error()
}

func (e *ReloadError) Unwrap() error { return e.Err }

// Problems lists the reasons one per entry.
func (e *ReloadError) Problems() []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		out = append(out, err.Error())
	}
	walk(e.Err)
	return out
}

// New builds an agent. It registers the host metrics and sets up the
// container's host services; nothing runs until Run.
func New(o Options) (*Agent, error) {
	if o.Registry == nil || o.Config == nil {
		return nil, errors.New("agent: Registry and Config are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	hm, err := NewHostMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("agent metrics: %w", err)
	}
	fm, err := newFrontMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("agent metrics: %w", err)
	}
	am, err := alertmanager.NewMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("alertmanager metrics: %w", err)
	}
	// The plugins register through gatherer, which gathers the health
	// engine's series without the registry's checks of each.
	gatherer := NewMetricsRegistry(o.Metrics)
	m := NewManager(ManagerOptions{
		Registry: o.Registry, Logger: o.Logger, TracerProvider: o.TracerProvider, Metrics: hm,
		Registerer: gatherer,
	})
	a := &Agent{o: o, log: o.Logger, manager: m, metrics: hm, gatherer: gatherer, alertMetrics: am, ready: make(chan struct{})}
	if o.ConfigPath != "" {
		a.lastHash = fileHash(ReadFile(o.ConfigPath, MaxConfigBytes))
	}
	var reload func(context.Context) error
	if o.ConfigPath != "" {
		reload = a.Reload
	}
	a.server = NewServer(ServerOptions{
		Manager: m, Gatherer: gatherer, Tracez: o.Tracez, Reload: reload, Logger: o.Logger, Version: o.Version,
		Guard: o.Guard, metrics: fm,
	})
	// The gate closes before the listener serves its first byte.
	a.server.configure(o.Config)
	return a, nil
}

// Manager returns the agent's lifecycle manager.
func (a *Agent) Manager() *Manager { return a.manager }

// Started is closed when every plugin has been through startup.
func (a *Agent) Started() <-chan struct{} { return a.ready }

// Run listens, starts the plugins and serves until ctx is done, then stops
// the plugins in reverse order and closes the listener. It returns nil after
// a clean shutdown, and an error when the listener cannot be bound, a
// required plugin fails at startup, or a plugin fails to stop.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.o.Config
	ln := a.o.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", cfg.Core.APIGateway.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (core.api_gateway.listen): %w", cfg.Core.APIGateway.Listen, err)
		}
	}
	a.log.Info("listening", "address", ln.Addr().String())
	hc := cfg.Core.APIGateway.HTTP
	vetted := newVettingListener(ln, hc.ReadHeaderTimeout.D(), hc.MaxHeaderBytes, 4*hc.MaxConnections, a.server.o.metrics)
	limited := newConnLimiter(vetted, hc.MaxConnections, a.server.o.metrics)
	ln = limited
	srv := &http.Server{
		Handler:           a.server,
		ReadHeaderTimeout: hc.ReadHeaderTimeout.D(),
		ReadTimeout:       hc.ReadTimeout.D(),
		WriteTimeout:      hc.WriteTimeout.D(),
		IdleTimeout:       hc.IdleTimeout.D(),
		MaxHeaderBytes:    hc.MaxHeaderBytes,
		ConnState:         limited.connState,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	began := time.Now()
	if err := a.manager.Start(ctx, cfg); err != nil {
		_ = srv.Close()
		<-serveErr
		return fmt.Errorf("startup: %w", err)
	}
	a.alertMu.Lock()
	a.listenAddr = ln.Addr().String() // from now on reloads restart the push
	err := a.startAlerting(a.manager.Config().Core.Alerting, a.listenAddr)
	a.alertMu.Unlock()
	if err != nil {
		return errors.Join(fmt.Errorf("startup: %w", err), a.shutdown(srv, serveErr, false))
	}
	close(a.ready)
	a.log.Info("vitals is running",
		"took", time.Since(began).Round(time.Microsecond),
		"metrics", "http://"+ln.Addr().String()+"/metrics",
		"plugins", "http://"+ln.Addr().String()+"/api/v1/admin/plugins",
		"tracez", "http://"+ln.Addr().String()+"/debug/tracez",
	)

	var watchDone chan struct{}
	if a.o.ConfigPath != "" && cfg.Watch() {
		watchDone = make(chan struct{})
		wctx, cancel := context.WithCancel(ctx)
		defer func() { cancel(); <-watchDone }()
		go func() { defer close(watchDone); a.watch(wctx) }()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	return errors.Join(runErr, a.shutdown(srv, serveErr, runErr != nil))
}

func (a *Agent) shutdown(srv *http.Server, serveErr chan error, served bool) error {
	a.log.Info("shutting down")
	// The push stops first: plugins that stop are not failures to page on.
	a.alertMu.Lock()
	a.stopAlerting()
	a.listenAddr = "" // and reloads no longer start it
	a.alertMu.Unlock()
	cfg := a.manager.Config()
	n := len(a.manager.Order()) + 1
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Core.Lifecycle.StopTimeout.D()*time.Duration(n))
	defer cancel()
	err := a.manager.Stop(ctx)
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	if herr := srv.Shutdown(hctx); herr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", herr))
	}
	if !served {
		<-serveErr
	}
	if err != nil {
		a.log.Error("shutdown finished with errors", "err", err)
	} else {
		a.log.Info("shutdown complete")
	}
	return err
}

// Reload re-reads the config file and applies it. A file that does not
// parse or validate is rejected (a *ReloadError with Rejected set), logged
// and counted; the running config stays.
func (a *Agent) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.o.ConfigPath == "" {
		return errors.New("no config file to reload")
	}
	data, err := ReadFile(a.o.ConfigPath, MaxConfigBytes)
	a.lastHash = fileHash(data, err)
	if err == nil {
		var cfg *Config
		cfg, err = Parse(ctx, a.o.ConfigPath, data, a.o.Registry, a.o.Env)
		if err == nil {
			return a.apply(ctx, cfg)
		}
	}
	a.metrics.ObserveReload("rejected")
	a.log.Error("config rejected; the running config stays", "file", a.o.ConfigPath, "err", err)
	return &ReloadError{Rejected: true, Err: err}
}

func (a *Agent) apply(ctx context.Context, cfg *Config) error {
	old := a.manager.Config()
	if cfg.Core.APIGateway.Listen != old.Core.APIGateway.Listen {
		a.log.Warn("core.api_gateway.listen changed; it takes effect at the next restart",
			"running", old.Core.APIGateway.Listen, "configured", cfg.Core.APIGateway.Listen)
	}
	if cfg.Core.APIGateway.HTTP != old.Core.APIGateway.HTTP {
		a.log.Warn("core.api_gateway.http changed; it takes effect at the next restart")
	}
	if cfg.Core.Log.Format != old.Core.Log.Format {
		a.log.Warn("core.log.format changed; it takes effect at the next restart")
	}
	// A config that enables the guard closes the gate before anything
	// changes; one that disables it opens the gate only once applied.
	prev := a.server.guard.Load()
	a.server.configure(cfg)
	if next := a.server.guard.Load(); next.Plugin == "" {
		a.server.guard.Store(prev)
	}
	err := a.manager.Reload(ctx, cfg)
	if err != nil && errors.Is(err, errReloadRejected) {
		a.server.guard.Store(prev)
		a.metrics.ObserveReload("rejected")
		a.log.Error("config rejected; the running config stays", "file", a.o.ConfigPath, "err", err)
		return &ReloadError{Rejected: true, Err: err}
	}
	a.server.configure(cfg)
	if a.o.LogLevel != nil {
		a.o.LogLevel.Set(ParseLevel(cfg.Core.Log.Level))
	}
	a.reloadAlerting(cfg.Core.Alerting)
	if err != nil {
		a.metrics.ObserveReload("partial")
		a.log.Error("config applied, but plugins failed", "err", err)
		return &ReloadError{Err: err}
	}
	a.metrics.ObserveReload("success")
	a.log.Info("config reloaded", "file", a.o.ConfigPath, "order", a.manager.Order())
	return nil
}

// watch reloads when the config file's content changes (not on every event
// in its directory: the hash of the last applied file is compared).
func (a *Agent) watch(ctx context.Context) {
	dirwatch.Watch(ctx, filepath.Dir(a.o.ConfigPath), dirwatch.Options{Logger: a.log}, func() {
		data, err := ReadFile(a.o.ConfigPath, MaxConfigBytes)
		if errors.Is(err, os.ErrNotExist) {
			return // mid-replace; a later event follows
		}
		// A file that cannot be read (too large, not a regular file) is
		// rejected and counted once, not at every event in the directory.
		sum := fileHash(data, err)
		a.reloadMu.Lock()
		same := bytes.Equal(sum[:], a.lastHash[:])
		a.reloadMu.Unlock()
		if same {
			return
		}
		a.log.Info("config file changed; reloading", "file", a.o.ConfigPath)
		_ = a.Reload(ctx) // logged and counted inside
	}, nil)
}

// fileHash identifies what reading the config file gave: its content, or
// the error reading it.
func fileHash(data []byte, err error) [32]byte {
	if err != nil {
		return sha256.Sum256([]byte("error: " + err.Error()))
	}
	return sha256.Sum256(data)
}

// ParseLevel maps a core.log.level value to a slog level.
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
