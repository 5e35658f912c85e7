package encryption

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/exporters/store"
)

// Name is the plugin's name in config and in the registry.
const Name = "encryption"

// Version of the plugin.
const Version = "0.1.0"

// Plugin is the encryption plugin.
type Plugin struct {
	agent.Base
	cfg Config

	mu   sync.Mutex
	log  *slog.Logger
	host agent.Host // finds the audit recorder on reload
	ops  *prometheus.CounterVec
	svc  *Service
}

// Factory builds the plugin from its section; it reads no key yet.
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
			Description: "AEAD encryption service for records at rest, with key rotation; TLS for the HTTP listener",
			Priority:    agent.PrioritySecurity,
		}),
		cfg: cfg,
	}
}

// Services implements agent.ServiceProvider.
func (p *Plugin) Services() []string { return []string{store.CipherService} }

// loadRing reads every key of cfg.
func loadRing(cfg Config) (*Keyring, error) {
	keys := make(map[string][]byte, len(cfg.Keys))
	for _, k := range cfg.Keys {
		m, err := k.material(cfg.secrets)
		if err != nil {
			return nil, fmt.Errorf("encryption: %w", err)
		}
		keys[k.ID] = m
	}
	return NewKeyring(cfg.ActiveKey, keys)
}

// Initialize reads the keys, registers the metrics and provides the
// service.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log, p.host = h.Logger(), h
	ring, err := loadRing(p.cfg)
	if err != nil {
		return err
	}
	p.ops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitals_encryption_operations_total",
		Help: "Seal and open operations of the encryption service, by outcome.",
	}, []string{"operation", "outcome"})
	if err := h.Metrics().Register(p.ops); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("encryption: %w", err)
		}
		p.ops = are.ExistingCollector.(*prometheus.CounterVec)
	}
	p.svc = &Service{ops: p.ops}
	p.svc.ring.Store(ring)
	return h.Provide(store.CipherService, p.svc)
}

// Start logs the active key; the service works from Initialize on.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.svc == nil {
		return errors.New("encryption: Start before Initialize")
	}
	p.log.Info("encryption ready", "active_key", p.svc.KeyID(), "keys", len(p.cfg.Keys), "tls", p.cfg.TLS != nil)
	return nil
}

// Reload rotates keys: a new ring is read and swapped in atomically. A key
// that cannot be read rejects the reload and keeps the old ring.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	cfg, err := decode(s)
	if err != nil {
		return err
	}
	ring, err := loadRing(cfg)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.svc == nil {
		return errors.New("encryption: Reload before Initialize")
	}
	p.svc.ring.Store(ring)
	p.cfg = cfg
	p.log.Info("encryption keys reloaded", "active_key", ring.Active(), "keys", len(cfg.Keys))
	if rec, err := agent.Require[audit.Recorder](ctx, p.host, audit.ServiceName); err == nil {
		rec.Record(audit.Record{Action: audit.ActionKeysReload, Target: ring.Active(),
			Detail: fmt.Sprintf("%d keys, active %s", len(cfg.Keys), ring.Active())})
	}
	return nil
}

// Stop has nothing to release; the host drops the metrics.
func (p *Plugin) Stop(ctx context.Context) error { return nil }

// HealthCheck adds the active key id to the state report.
func (p *Plugin) HealthCheck(ctx context.Context) agent.Health {
	h := p.Base.HealthCheck(ctx)
	p.mu.Lock()
	svc := p.svc
	p.mu.Unlock()
	if svc != nil {
		h.Details = map[string]string{"active_key": svc.KeyID()}
	}
	return h
}

// Service is the value of the encryption service: a store.Cipher over
// the current key ring, safe for concurrent use while keys rotate.
type Service struct {
	ring atomic.Pointer[Keyring]
	ops  *prometheus.CounterVec
}

func (s *Service) count(op string, err error) {
	if s.ops == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.ops.WithLabelValues(op, outcome).Inc()
}

// Seal encrypts plaintext with the active key, binding aad.
func (s *Service) Seal(plaintext, aad []byte) ([]byte, error) {
	out, err := s.ring.Load().Seal(plaintext, aad)
	s.count("seal", err)
	return out, err
}

// Open decrypts a ciphertext sealed by any key of the ring with the same
// aad. A tampered ciphertext is ErrAuth; one sealed with a key that left
// the ring is ErrUnknownKey.
func (s *Service) Open(ciphertext, aad []byte) ([]byte, error) {
	out, err := s.ring.Load().Open(ciphertext, aad)
	s.count("open", err)
	return out, err
}

// KeyID returns the id of the active key.
func (s *Service) KeyID() string { return s.ring.Load().Active() }

var (
	_ agent.Plugin          = (*Plugin)(nil)
	_ agent.ServiceProvider = (*Plugin)(nil)
	_ agent.Reloader        = (*Plugin)(nil)
	_ agent.HealthChecker   = (*Plugin)(nil)
	_ store.Cipher          = (*Service)(nil)
)
