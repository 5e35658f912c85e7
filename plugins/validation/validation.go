package validation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Name is the plugin's name in config and in the registry.
const Name = "validation"

// Version of the plugin.
const Version = "0.1.0"

// Plugin is the validation plugin.
type Plugin struct {
	agent.Base

	mu       sync.Mutex
	cfg      Config
	rejected *prometheus.CounterVec // kind, reason
	now      func() time.Time
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
			Description: "Validates HTTP API requests and bus messages before handlers and plugins see them",
			Priority:    agent.PriorityMiddleware,
		}),
		cfg: cfg,
		now: time.Now,
	}
}

// Services implements agent.ServiceProvider.
func (p *Plugin) Services() []string { return []string{bus.ValidatorService} }

// Initialize registers the metrics and provides bus_validator.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitals_validation_rejected_total",
		Help: "Requests and bus messages rejected by validation, by kind (http, bus) and reason.",
	}, []string{"kind", "reason"})
	if err := h.Metrics().Register(p.rejected); err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	return h.Provide(bus.ValidatorService, busValidator{p})
}

// Start has nothing to start: validation runs on the callers' goroutines.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rejected == nil {
		return errors.New("validation: Start before Initialize")
	}
	return nil
}

// Reload applies new limits.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decode(s)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return nil
}

// Stop has nothing to stop; the host drops the metrics.
func (p *Plugin) Stop(ctx context.Context) error { return nil }

func (p *Plugin) config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// WrapHTTP implements agent.HTTPMiddleware.
func (p *Plugin) WrapHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := p.config().HTTP
		body, prob := checkRequest(cfg, r)
		if prob != nil {
			p.rejected.WithLabelValues("http", prob.reason).Inc()
			if prob.code == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", strings.Join(cfg.Methods, ", "))
			}
			if prob.code == http.StatusRequestEntityTooLarge || prob.reason == "body" {
				w.Header().Set("Connection", "close")
			}
			agent.WriteError(w, prob.code, prob.msg)
			return
		}
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

// busValidator is the bus_validator service.
type busValidator struct{ p *Plugin }

// FilterMessage implements bus.Filter: an ErrInvalid error naming the
// problem, counted by reason.
func (v busValidator) FilterMessage(m bus.Message) error {
	if rej := checkMessage(v.p.config().Bus, m, v.p.now()); rej != nil {
		v.p.rejected.WithLabelValues("bus", rej.reason).Inc()
		return fmt.Errorf("%w: %s", ErrInvalid, rej.msg)
	}
	return nil
}

var (
	_ agent.Plugin          = (*Plugin)(nil)
	_ agent.ServiceProvider = (*Plugin)(nil)
	_ agent.HTTPMiddleware  = (*Plugin)(nil)
	_ agent.Reloader        = (*Plugin)(nil)
	_ bus.Filter            = busValidator{}
)
