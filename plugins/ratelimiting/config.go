package ratelimiting

import (
	"errors"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

// Config is the rate_limiting section of core.yaml:
//
//	rate_limiting:
//	  api:                      # per client: bearer token, else address
//	    rate: 20                # requests per second
//	    burst: 40
//	    exempt_paths: [/livez, /readyz, /api/v1/ai-plugins/*/ready]   # paths, prefixes ending in /, * for one segment
//	  bus:                      # per message source (external plugins)
//	    rate: 500               # messages per second
//	    burst: 1000
//	  max_clients: 10000        # buckets kept per kind; past it the least recent goes
//	  idle_timeout: 10m         # a bucket unused this long is dropped
type Config struct {
	API         Limit          `yaml:"api"`
	Bus         Limit          `yaml:"bus"`
	MaxClients  int            `yaml:"max_clients"`
	IdleTimeout agent.Duration `yaml:"idle_timeout"`
}

// Limit is one token bucket shape.
type Limit struct {
	Rate        float64  `yaml:"rate"`
	Burst       int      `yaml:"burst"`
	ExemptPaths []string `yaml:"exempt_paths"`
}

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		// The probes: a kubelet that probes many pods' AI plugins through
		// one agent is one client.
		API:         Limit{Rate: 20, Burst: 40, ExemptPaths: []string{"/livez", "/readyz", "/api/v1/ai-plugins/*/ready"}},
		Bus:         Limit{Rate: 500, Burst: 1000},
		MaxClients:  10000,
		IdleTimeout: agent.Duration(10 * time.Minute),
	}
}

func decode(s agent.Section) (Config, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate(s)
}

// validate checks every value and reports all the problems it finds.
func (c *Config) validate(s agent.Section) error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, s.Errorf(key, format, args...)) }
	for _, l := range []struct {
		key string
		Limit
	}{{"api", c.API}, {"bus", c.Bus}} {
		if l.Rate <= 0 || l.Rate > 1e6 {
			bad(l.key+".rate", "must be above 0 and at most 1000000 per second, got %v", l.Rate)
		}
		if l.Burst < 1 || l.Burst > 1e7 {
			bad(l.key+".burst", "must be between 1 and 10000000, got %d", l.Burst)
		}
	}
	if len(c.Bus.ExemptPaths) > 0 {
		bad("bus.exempt_paths", "paths apply to the HTTP API only")
	}
	for i, p := range c.API.ExemptPaths {
		if len(p) == 0 || p[0] != '/' {
			bad("api.exempt_paths", "entry %d: %q must start with /", i, p)
		}
	}
	if c.MaxClients < 1 || c.MaxClients > 10_000_000 {
		bad("max_clients", "must be between 1 and 10000000, got %d", c.MaxClients)
	}
	if c.IdleTimeout.D() < time.Second {
		bad("idle_timeout", "must be at least 1s, got %s", c.IdleTimeout)
	}
	return errors.Join(errs...)
}
