package validation

import (
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

// Config is the validation section of core.yaml:
//
//	validation:
//	  http:
//	    methods: [GET, HEAD, POST, OPTIONS]   # others are 405
//	    max_body_bytes: 1048576               # larger bodies are 413
//	    max_query_bytes: 4096
//	    max_json_depth: 32
//	    content_types: [application/json]     # for requests with a body; others are 415
//	  bus:
//	    max_payload_bytes: 1048576
//	    max_clock_skew: 5m                    # envelope times further in the future are rejected
//	    strict_payloads: true                 # known topics must carry their message type
type Config struct {
	HTTP HTTPConfig `yaml:"http"`
	Bus  BusConfig  `yaml:"bus"`
}

// HTTPConfig bounds API requests.
type HTTPConfig struct {
	Methods       []string `yaml:"methods"`
	MaxBodyBytes  int64    `yaml:"max_body_bytes"`
	MaxQueryBytes int      `yaml:"max_query_bytes"`
	MaxJSONDepth  int      `yaml:"max_json_depth"`
	ContentTypes  []string `yaml:"content_types"`
}

// BusConfig bounds bus messages.
type BusConfig struct {
	MaxPayloadBytes int            `yaml:"max_payload_bytes"`
	MaxClockSkew    agent.Duration `yaml:"max_clock_skew"`
	StrictPayloads  bool           `yaml:"strict_payloads"`
}

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		HTTP: HTTPConfig{
			Methods:       []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodOptions},
			MaxBodyBytes:  1 << 20,
			MaxQueryBytes: 4096,
			MaxJSONDepth:  32,
			ContentTypes:  []string{"application/json"},
		},
		Bus: BusConfig{MaxPayloadBytes: 1 << 20, MaxClockSkew: agent.Duration(5 * time.Minute), StrictPayloads: true},
	}
}

func decode(s agent.Section) (Config, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate(s)
}

func (c *Config) validate(s agent.Section) error {
	if len(c.HTTP.Methods) == 0 {
		return s.Errorf("http.methods", "needs at least one method")
	}
	for i, m := range c.HTTP.Methods {
		switch m {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			return s.Errorf("http.methods", "entry %d: %q is not an HTTP method this API could use", i, m)
		}
	}
	if c.HTTP.MaxBodyBytes < 0 || c.HTTP.MaxBodyBytes > 64<<20 {
		return s.Errorf("http.max_body_bytes", "must be between 0 and %d, got %d", 64<<20, c.HTTP.MaxBodyBytes)
	}
	if c.HTTP.MaxQueryBytes < 64 || c.HTTP.MaxQueryBytes > 1<<20 {
		return s.Errorf("http.max_query_bytes", "must be between 64 and %d, got %d", 1<<20, c.HTTP.MaxQueryBytes)
	}
	if c.HTTP.MaxJSONDepth < 1 || c.HTTP.MaxJSONDepth > 1000 {
		return s.Errorf("http.max_json_depth", "must be between 1 and 1000, got %d", c.HTTP.MaxJSONDepth)
	}
	for i, ct := range c.HTTP.ContentTypes {
		if !strings.Contains(ct, "/") {
			return s.Errorf("http.content_types", "entry %d: %q is not a media type", i, ct)
		}
	}
	if c.Bus.MaxPayloadBytes < 1 || c.Bus.MaxPayloadBytes > 256<<20 {
		return s.Errorf("bus.max_payload_bytes", "must be between 1 and %d, got %d", 256<<20, c.Bus.MaxPayloadBytes)
	}
	if c.Bus.MaxClockSkew.D() <= 0 {
		return s.Errorf("bus.max_clock_skew", "must be positive, got %s", c.Bus.MaxClockSkew)
	}
	return nil
}
