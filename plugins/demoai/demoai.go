package demoai

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// Version of the plugin.
const Version = "0.1.0"

// Config is a demo plugin's section.
type Config struct {
	// Listen is the simulated server's address; port 0 picks a free one.
	Listen string `yaml:"listen"`
	// Version is the version the simulated server reports.
	Version string `yaml:"version"`
	// Latency added to every request, and the share of requests that fail.
	Latency   agent.Duration `yaml:"latency"`
	ErrorRate float64        `yaml:"error_rate"`
}

// Factory returns the factory of a demo plugin named name that simulates a
// server of the given kind.
func Factory(name string, kind probes.Kind) agent.Factory {
	return func(s agent.Section) (agent.Plugin, error) {
		cfg := Config{Listen: "127.0.0.1:0"}
		if err := s.Decode(&cfg); err != nil {
			return nil, err
		}
		if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
			return nil, s.Errorf("listen", "invalid address %q: want host:port", cfg.Listen)
		}
		if cfg.ErrorRate < 0 || cfg.ErrorRate > 1 {
			return nil, s.Errorf("error_rate", "must be between 0 and 1, got %v", cfg.ErrorRate)
		}
		if cfg.Latency.D() < 0 {
			return nil, s.Errorf("latency", "must not be negative, got %s", cfg.Latency)
		}
		if !slices.Contains(probes.Kinds(), kind) {
			return nil, fmt.Errorf("demo plugin %s: kind %q cannot be simulated", name, kind)
		}
		return &Plugin{
			Base: agent.NewBase(agent.Metadata{
				Name: name, Version: Version, Priority: agent.PriorityBusiness,
				Description: fmt.Sprintf("demo AI plugin: a simulated %s server on loopback", kind),
			}),
			kind: kind, cfg: cfg,
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}, CheckRedirect: probes.SameHostRedirect},
		}, nil
	}
}

// Plugin is one demo AI plugin.
type Plugin struct {
	agent.Base
	kind   probes.Kind
	cfg    Config
	client *http.Client

	mu   sync.Mutex
	host agent.Host
	sim  *aisim.Server
	srv  *http.Server
	addr string
}

// Initialize keeps the Host: the server is started in Start.
func (p *Plugin) Initialize(_ context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host = h
	return nil
}

// Start serves the simulated server.
func (p *Plugin) Start(ctx context.Context) error {
	sim, err := aisim.New(aisim.Config{Kind: p.kind, Version: p.cfg.Version, Knobs: aisim.Knobs{
		Latency: aisim.Duration(p.cfg.Latency), ErrorRate: p.cfg.ErrorRate,
	}})
	if err != nil {
		return err
	}
	if p.kind == probes.KindOllama {
		// A demo of a server in use: its chat model is loaded, as after a
		// user's request with keep_alive -1. Left alone it would be cold.
		if err := sim.Preload(ctx, "tiny:latest"); err != nil {
			sim.Close()
			return err
		}
	}
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		sim.Close()
		return fmt.Errorf("listen on %s: %w", p.cfg.Listen, err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sim, p.srv, p.addr = sim, srv, ln.Addr().String()
	p.host.Go(func(context.Context) {
		_ = srv.Serve(ln) // ends with ErrServerClosed on Stop
	})
	return nil
}

// Stop closes the server, ending hung requests. Safe twice and without Start.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	sim, srv := p.sim, p.srv
	p.sim, p.srv = nil, nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	sim.Close() // ends hangs first, so Shutdown does not wait on them
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = errors.Join(err, srv.Close())
	}
	p.client.CloseIdleConnections()
	return err
}

// Endpoint is the simulated server's base URL.
func (p *Plugin) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == "" {
		return ""
	}
	return "http://" + p.addr
}

// Capabilities detects the simulated server like any other.
func (p *Plugin) Capabilities(ctx context.Context) (probes.Detection, error) {
	ep := p.Endpoint()
	if ep == "" {
		return probes.Detection{Kind: probes.KindUnknown, Reason: "not started"}, errors.New("not started")
	}
	return engines.Registry().Detect(ctx, p.client, ep, probes.DetectOptions{Kind: p.kind, Attempts: 1})
}

// HealthCheck runs the liveness probe of its kind against the simulated
// server, as the health engine does.
func (p *Plugin) HealthCheck(ctx context.Context) agent.Health {
	h := p.Base.HealthCheck(ctx)
	ep := p.Endpoint()
	if h.Status != agent.HealthOK || ep == "" {
		return h
	}
	_, err := engines.Registry().Probes(p.kind).Liveness.Probe(ctx, p.client, probes.Target{ID: p.Name(), BaseURL: ep, Kind: p.kind}, probes.Config{})
	if err != nil {
		return agent.Health{Status: agent.HealthFailing, Message: err.Error(), Checked: time.Now(),
			Details: map[string]string{"class": string(probes.Classify(err))}}
	}
	return h
}

var (
	_ agent.Plugin        = (*Plugin)(nil)
	_ agent.HealthChecker = (*Plugin)(nil)
	_ catalog.AI          = (*Plugin)(nil)
	_ catalog.Endpointer  = (*Plugin)(nil)
)
