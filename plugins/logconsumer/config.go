package logconsumer

import (
	"errors"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Config is the log_consumer section of core.yaml:
//
//	log_consumer:
//	  path: vitals-data/logs.db    # SQLite file, created with its directory; relative: beside core.yaml
//	  subscribe: ["logs."]         # bus prefixes to store
//	  publish_agent_logs: true     # the agent's own records go to logs.<level>.<source>
//	  encrypt: auto                # auto: when the encryption service runs; required; off
//	  batch_size: 512              # records per transaction
//	  flush_interval: 500ms
//	  queue: 10000                 # records waiting to be written; past it, dropped and counted
//	  retention: {max_age: 168h, max_rows: 1000000, max_bytes: 268435456, interval: 1m}
type Config struct {
	Path             string         `yaml:"path"`
	Subscribe        []string       `yaml:"subscribe"`
	PublishAgentLogs bool           `yaml:"publish_agent_logs"`
	Encrypt          string         `yaml:"encrypt"`
	BatchSize        int            `yaml:"batch_size"`
	FlushInterval    agent.Duration `yaml:"flush_interval"`
	Queue            int            `yaml:"queue"`
	Retention        Retention      `yaml:"retention"`
}

// Retention bounds the stored logs; zero turns a limit off.
type Retention struct {
	MaxAge   agent.Duration `yaml:"max_age"`
	MaxRows  int64          `yaml:"max_rows"`
	MaxBytes int64          `yaml:"max_bytes"`
	Interval agent.Duration `yaml:"interval"`
}

// Encrypt modes.
const (
	EncryptAuto     = "auto"
	EncryptRequired = "required"
	EncryptOff      = "off"
)

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		Path:             "vitals-data/logs.db",
		Subscribe:        []string{"logs."},
		PublishAgentLogs: true,
		Encrypt:          EncryptAuto,
		BatchSize:        512,
		FlushInterval:    agent.Duration(500 * time.Millisecond),
		Queue:            10000,
		Retention: Retention{
			MaxAge:   agent.Duration(7 * 24 * time.Hour),
			MaxRows:  1_000_000,
			MaxBytes: 256 << 20,
			Interval: agent.Duration(time.Minute),
		},
	}
}

func decode(s agent.Section) (Config, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return cfg, err
	}
	if err := cfg.validate(s); err != nil {
		return cfg, err
	}
	cfg.Path = s.Resolve(cfg.Path)
	return cfg, nil
}

func (c *Config) validate(s agent.Section) error {
	var errs []error
	bad := func(err error) { errs = append(errs, err) }
	if c.Path == "" {
		bad(s.Errorf("path", "must not be empty"))
	}
	if len(c.Subscribe) == 0 {
		bad(s.Errorf("subscribe", "needs at least one topic prefix"))
	}
	for i, p := range c.Subscribe {
		if p == "" || bus.ValidTopic(trimDot(p)) != nil {
			bad(s.Errorf("subscribe", "entry %d: %q is not a topic prefix", i, p))
		}
	}
	switch c.Encrypt {
	case EncryptAuto, EncryptRequired, EncryptOff:
	default:
		bad(s.Errorf("encrypt", "want auto, required or off, got %q", c.Encrypt))
	}
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		bad(s.Errorf("batch_size", "must be between 1 and 100000, got %d", c.BatchSize))
	}
	if c.FlushInterval.D() <= 0 {
		bad(s.Errorf("flush_interval", "must be positive, got %s", c.FlushInterval))
	}
	if c.Queue < 1 || c.Queue > 10_000_000 {
		bad(s.Errorf("queue", "must be between 1 and 10000000, got %d", c.Queue))
	}
	if c.Retention.MaxAge.D() < 0 || c.Retention.MaxRows < 0 || c.Retention.MaxBytes < 0 {
		bad(s.Errorf("retention", "limits must not be negative"))
	}
	if c.Retention.Interval.D() <= 0 {
		bad(s.Errorf("retention.interval", "must be positive, got %s", c.Retention.Interval))
	}
	return errors.Join(errs...)
}

func trimDot(p string) string {
	for len(p) > 0 && p[len(p)-1] == '.' {
		p = p[:len(p)-1]
	}
	return p
}

// topics: the log consumer subscribes to its prefixes at start.
func (c Config) topics() bus.Topics {
	sub := bus.Permissions{Subscribe: c.Subscribe}
	return bus.Topics{Uses: sub, Needs: sub}
}
