package ratelimiting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Name is the plugin's name in config and in the registry.
const Name = "rate_limiting"

// Version of the plugin.
const Version = "0.1.0"

// ErrLimited is returned by FilterMessage for a message over its source's
// rate.
var ErrLimited = errors.New("rate limited")

// Plugin is the rate_limiting plugin.
type Plugin struct {
	agent.Base

	mu   sync.Mutex
	cfg  Config
	host agent.Host
	m    *metrics
	api  *buckets
	bus  *buckets
	now  func() time.Time
}

type metrics struct {
	decisions *prometheus.CounterVec // kind, outcome
	clients   *prometheus.GaugeVec   // kind
	evictions *prometheus.CounterVec // kind
}

// Factory builds the plugin from its section.
func Factory(s agent.Section) (agent.Plugin, error) {
	cfg, err := decode(s)
	if err != nil {
		return nil, err
	}
	return New(cfg), nil
}

// New returns the plugin with a validated config.
func New(cfg Config) *Plugin {
	return &Plugin{
		Base: agent.NewBase(agent.Metadata{
			Name:        Name,
			Version:     Version,
			Description: "Per-client token buckets on the HTTP API (429) and per-peer limits on bus messages",
			Priority:    agent.PriorityMiddleware,
		}),
		cfg: cfg,
		now: time.Now,
	}
}

// Services implements agent.ServiceProvider.
func (p *Plugin) Services() []string { return []string{bus.RateLimiterService} }

// Initialize builds the buckets and metrics and provides bus_rate_limiter.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.host = h
	p.m = &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_rate_limit_decisions_total",
			Help: "Rate limit decisions by kind (api, bus) and outcome (allowed, limited).",
		}, []string{"kind", "outcome"}),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_rate_limit_clients",
			Help: "Token buckets currently tracked, by kind.",
		}, []string{"kind"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_rate_limit_evictions_total",
			Help: "Buckets evicted before going idle because max_clients was reached, by kind.",
		}, []string{"kind"}),
	}
	for _, k := range []string{"api", "bus"} {
		p.m.decisions.WithLabelValues(k, "allowed")
		p.m.decisions.WithLabelValues(k, "limited")
		p.m.evictions.WithLabelValues(k)
	}
	for _, col := range []prometheus.Collector{p.m.decisions, p.m.clients, p.m.evictions} {
		if err := h.Metrics().Register(col); err != nil {
			return fmt.Errorf("rate_limiting: %w", err)
		}
	}
	idle := p.cfg.IdleTimeout.D()
	p.api = newBuckets(p.cfg.API.Rate, p.cfg.API.Burst, p.cfg.MaxClients, idle, p.m.evictions.WithLabelValues("api").Inc)
	p.bus = newBuckets(p.cfg.Bus.Rate, p.cfg.Bus.Burst, p.cfg.MaxClients, idle, p.m.evictions.WithLabelValues("bus").Inc)
	return h.Provide(bus.RateLimiterService, busFilter{p})
}

// Start runs the janitor that drops idle buckets.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.api == nil {
		return errors.New("rate_limiting: Start before Initialize")
	}
	every := p.cfg.IdleTimeout.D() / 2
	p.host.Go(func(ctx context.Context) {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.Sweep()
			}
		}
	})
	return nil
}

// Sweep drops idle buckets now (the janitor calls it periodically).
func (p *Plugin) Sweep() {
	now := p.now()
	p.api.sweep(now)
	p.bus.sweep(now)
	p.m.clients.WithLabelValues("api").Set(float64(p.api.len()))
	p.m.clients.WithLabelValues("bus").Set(float64(p.bus.len()))
}

// Reload applies new rates to every bucket, present and future.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decode(s)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.api == nil {
		return errors.New("rate_limiting: Reload before Initialize")
	}
	if cfg.IdleTimeout != p.cfg.IdleTimeout {
		return s.Errorf("idle_timeout", "changes at the next start; restart the plugin (disable, enable)")
	}
	now := p.now()
	p.api.set(cfg.API.Rate, cfg.API.Burst, cfg.MaxClients, cfg.IdleTimeout.D(), now)
	p.bus.set(cfg.Bus.Rate, cfg.Bus.Burst, cfg.MaxClients, cfg.IdleTimeout.D(), now)
	p.cfg = cfg
	return nil
}

// Stop has nothing to release: the host ends the janitor and drops the
// metrics.
func (p *Plugin) Stop(ctx context.Context) error { return nil }

func (p *Plugin) config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// WrapHTTP implements agent.HTTPMiddleware.
func (p *Plugin) WrapHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := p.config()
		for _, e := range cfg.API.ExemptPaths {
			if agent.MatchPath(e, r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
		}
		ok, wait := p.api.reserve(ClientKey(r), p.now())
		if !ok {
			p.m.decisions.WithLabelValues("api", "limited").Inc()
			secs := int(math.Ceil(wait.Seconds()))
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			agent.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit of %g requests per second (burst %d) exceeded; retry in %ds", cfg.API.Rate, cfg.API.Burst, secs))
			return
		}
		p.m.decisions.WithLabelValues("api", "allowed").Inc()
		next.ServeHTTP(w, r)
	})
}

// ClientKey is what a request is limited by: its bearer token (hashed, so
// the token is not kept) or, without one, its address.
func ClientKey(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		sum := sha256.Sum256([]byte(strings.TrimSpace(h)))
		return "token:" + hex.EncodeToString(sum[:8])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// busFilter is the bus_rate_limiter service.
type busFilter struct{ p *Plugin }

// FilterMessage implements bus.Filter: ErrLimited for a message over its
// peer's rate. The bucket is the broker's identity of the publishing
// connection (bus.Message.Peer: the PLAIN user, or the connection under
// NULL security), never the source the envelope claims, so changing
// sources does not escape it. The agent's own plugins are exempt; a
// message without a peer shares one bucket with every other such message.
func (f busFilter) FilterMessage(m bus.Message) error {
	p := f.p
	if m.Peer == bus.PeerAgent {
		return nil
	}
	key := "peer:" + m.Peer
	if m.Peer == "" {
		key = "unattributed"
	}
	if ok, _ := p.bus.reserve(key, p.now()); !ok {
		p.m.decisions.WithLabelValues("bus", "limited").Inc()
		return fmt.Errorf("%w: %s over %g messages per second", ErrLimited, key, p.config().Bus.Rate)
	}
	p.m.decisions.WithLabelValues("bus", "allowed").Inc()
	return nil
}

var (
	_ agent.Plugin          = (*Plugin)(nil)
	_ agent.ServiceProvider = (*Plugin)(nil)
	_ agent.HTTPMiddleware  = (*Plugin)(nil)
	_ agent.Reloader        = (*Plugin)(nil)
	_ bus.Filter            = busFilter{}
)
