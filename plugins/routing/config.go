package routing

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Config is the routing section of core.yaml:
//
//	routing:
//	  default_timeout: 5s
//	  default_topic: health.request.{name}   # topic of a destination without a route
//	  max_pending: 10000                     # requests waiting at once; past it, refused
//	  late_reply_memory: 4096                # timed-out ids remembered to count late replies
//	  routes:
//	    gpu_probe: {topic: gpu_probe.rpc, timeout: 2s}
type Config struct {
	DefaultTimeout  agent.Duration   `yaml:"default_timeout"`
	DefaultTopic    string           `yaml:"default_topic"`
	MaxPending      int              `yaml:"max_pending"`
	LateReplyMemory int              `yaml:"late_reply_memory"`
	Routes          map[string]Route `yaml:"routes"`
}

// Route is where a named destination's requests go.
type Route struct {
	Topic   string         `yaml:"topic"`
	Timeout agent.Duration `yaml:"timeout"`
}

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		DefaultTimeout:  agent.Duration(5 * time.Second),
		DefaultTopic:    "health.request.{name}",
		MaxPending:      10000,
		LateReplyMemory: 4096,
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
	if c.DefaultTimeout.D() <= 0 || c.DefaultTimeout.D() > 10*time.Minute {
		bad("default_timeout", "must be above 0 and at most 10m, got %s", c.DefaultTimeout)
	}
	if !strings.Contains(c.DefaultTopic, "{name}") || bus.ValidTopic(strings.ReplaceAll(c.DefaultTopic, "{name}", "x")) != nil {
		bad("default_topic", "%q must be a topic containing {name}", c.DefaultTopic)
	}
	if c.MaxPending < 1 || c.MaxPending > 1_000_000 {
		bad("max_pending", "must be between 1 and 1000000, got %d", c.MaxPending)
	}
	if c.LateReplyMemory < 0 || c.LateReplyMemory > 1_000_000 {
		bad("late_reply_memory", "must be between 0 and 1000000, got %d", c.LateReplyMemory)
	}
	names := make([]string, 0, len(c.Routes))
	for name := range c.Routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := c.Routes[name]
		if bus.ValidTopic(r.Topic) != nil {
			bad("routes."+name+".topic", "%q is not a valid topic", r.Topic)
		} else if strings.HasPrefix(r.Topic, bus.ReplyPrefix) {
			bad("routes."+name+".topic", "requests cannot go to reply topics")
		}
		if r.Timeout.D() < 0 || r.Timeout.D() > 10*time.Minute {
			bad("routes."+name+".timeout", "must be between 0 (the default) and 10m, got %s", r.Timeout)
		}
	}
	return errors.Join(errs...)
}

// topics are the prefixes requests are published under. A default_topic
// that starts with {name} has no fixed prefix; config must grant it.
func (c Config) topics() bus.Topics {
	var pub []string
	if pre, _, _ := strings.Cut(c.DefaultTopic, "{name}"); pre != "" {
		pub = append(pub, pre)
	}
	names := make([]string, 0, len(c.Routes))
	for name := range c.Routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pub = append(pub, c.Routes[name].Topic)
	}
	return bus.Topics{Uses: bus.Permissions{Publish: pub}}
}
