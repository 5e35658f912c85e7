package security

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// Roles.
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// Config is the security section of core.yaml:
//
//	security:
//	  tokens:
//	    - {name: ops, role: admin, sha256: 9f86d0...}        # hash of the token
//	    - {name: grafana, role: viewer, file: /run/secrets/vitals_token}
//	    - {name: ci, role: admin, env: VITALS_TOKEN_CI}
//	  open_paths: [/metrics, /livez, /readyz, /api/v1/ai-plugins/*/ready]   # reachable without a token (GET, HEAD)
//	  anonymous: loopback        # no tokens: loopback clients are admin; "deny" refuses all
//	  api_disable: token         # disabling security over the API needs an admin token; "never"
//	  audit:
//	    path: vitals-data/audit.db
//	    publish: true            # also on the bus as audit.<action>
//	    retention: {max_age: 2160h, max_rows: 1000000, interval: 10m}
type Config struct {
	Tokens    []TokenConfig `yaml:"tokens"`
	OpenPaths []string      `yaml:"open_paths"`
	Anonymous string        `yaml:"anonymous"`
	// APIDisable is who may disable the security plugin over the admin
	// API: "token", a client with an admin token (never an anonymous
	// loopback client), or "never", nobody.
	APIDisable string      `yaml:"api_disable"`
	Audit      AuditConfig `yaml:"audit"`

	secrets agent.Secrets // reads the tokens, from the config's environment
}

// TokenConfig is one bearer token: its name (the actor in audit records),
// its role, and exactly one of sha256, file and env.
type TokenConfig struct {
	Name   string `yaml:"name"`
	Role   string `yaml:"role"`
	SHA256 string `yaml:"sha256"`
	File   string `yaml:"file"`
	Env    string `yaml:"env"`
}

// AuditConfig is where the audit log is kept.
type AuditConfig struct {
	Path      string         `yaml:"path"`
	Publish   bool           `yaml:"publish"`
	Retention AuditRetention `yaml:"retention"`
}

// AuditRetention bounds the audit table; zero turns a limit off.
type AuditRetention struct {
	MaxAge   agent.Duration `yaml:"max_age"`
	MaxRows  int64          `yaml:"max_rows"`
	Interval agent.Duration `yaml:"interval"`
}

// AIReadyPath is the open path pattern of the AI plugins' readiness
// endpoints (GET /api/v1/ai-plugins/{id}/ready), which readiness probes
// and load balancers call without a token, as they call /readyz. It is
// the one path under /api/ that open_paths may name.
const AIReadyPath = "/api/v1/ai-plugins/*/ready"

// Anonymous modes.
const (
	AnonymousLoopback = "loopback"
	AnonymousDeny     = "deny"
)

// APIDisable policies.
const (
	APIDisableToken = "token"
	APIDisableNever = "never"
)

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config {
	return Config{
		OpenPaths:  []string{"/metrics", "/livez", "/readyz", AIReadyPath},
		Anonymous:  AnonymousLoopback,
		APIDisable: APIDisableToken,
		Audit: AuditConfig{
			Path:    "vitals-data/audit.db",
			Publish: true,
			Retention: AuditRetention{
				MaxAge:   agent.Duration(90 * 24 * time.Hour),
				MaxRows:  1_000_000,
				Interval: agent.Duration(10 * time.Minute),
			},
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
	cfg.secrets = s.Secrets()
	cfg.Audit.Path = s.Resolve(cfg.Audit.Path)
	for i := range cfg.Tokens {
		cfg.Tokens[i].File = s.Resolve(cfg.Tokens[i].File)
	}
	return cfg, nil
}

func (c *Config) validate(s agent.Section) error {
	seen := map[string]bool{}
	for i, t := range c.Tokens {
		key := fmt.Sprintf("tokens[%d]", i)
		if !agent.ValidName(t.Name) {
			return s.Errorf(key+".name", "%q: want a name like ops or grafana_reader", t.Name)
		}
		if seen[t.Name] {
			return s.Errorf(key+".name", "duplicate token name %q", t.Name)
		}
		seen[t.Name] = true
		if t.Role != RoleViewer && t.Role != RoleAdmin {
			return s.Errorf(key+".role", "want viewer or admin, got %q", t.Role)
		}
		n := 0
		for _, v := range []string{t.SHA256, t.File, t.Env} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return s.Errorf(key, "set exactly one of sha256, file and env")
		}
		if t.SHA256 != "" {
			if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
				return s.Errorf(key+".sha256", "want 64 hex digits (sha256sum of the token)")
			}
		}
	}
	for i, p := range c.OpenPaths {
		if !strings.HasPrefix(p, "/") {
			return s.Errorf("open_paths", "entry %d: %q must start with /", i, p)
		}
		if strings.HasPrefix(p, "/api/") && p != AIReadyPath {
			return s.Errorf("open_paths", "entry %d: %q: the admin API cannot be opened; use a viewer token (of /api/, only %s may be open)", i, p, AIReadyPath)
		}
		if strings.Contains(p, "*") && p != AIReadyPath {
			return s.Errorf("open_paths", "entry %d: %q: * is only for %s; name paths, or prefixes ending in /", i, p, AIReadyPath)
		}
		// An entry ending in "/" is a prefix: "/" would open every path.
		if strings.HasSuffix(p, "/") && strings.HasPrefix("/api/", p) {
			return s.Errorf("open_paths", "entry %d: %q: a prefix of /api/: the admin API cannot be opened; name the paths to open one by one, or use a viewer token", i, p)
		}
	}
	if c.Anonymous != AnonymousLoopback && c.Anonymous != AnonymousDeny {
		return s.Errorf("anonymous", "want loopback or deny, got %q", c.Anonymous)
	}
	if c.APIDisable != APIDisableToken && c.APIDisable != APIDisableNever {
		return s.Errorf("api_disable", "want token or never, got %q", c.APIDisable)
	}
	if c.Audit.Path == "" {
		return s.Errorf("audit.path", "must not be empty")
	}
	if c.Audit.Retention.MaxAge.D() < 0 || c.Audit.Retention.MaxRows < 0 {
		return s.Errorf("audit.retention", "limits must not be negative")
	}
	if c.Audit.Retention.Interval.D() <= 0 {
		return s.Errorf("audit.retention.interval", "must be positive, got %s", c.Audit.Retention.Interval)
	}
	return nil
}

// maxTokenFileBytes bounds a token file: a token is a line, not a document.
const maxTokenFileBytes = 4 << 10

// token is a resolved token: only its hash is kept.
type token struct {
	name, role string
	hash       [sha256.Size]byte
}

// resolve reads tokens from files and the environment and hashes them.
func resolve(cfg Config) ([]token, error) {
	out := make([]token, 0, len(cfg.Tokens))
	for _, t := range cfg.Tokens {
		tk := token{name: t.Name, role: t.Role}
		switch {
		case t.SHA256 != "":
			b, _ := hex.DecodeString(t.SHA256)
			copy(tk.hash[:], b)
		default:
			b, err := cfg.secrets.Read(t.File, t.Env, maxTokenFileBytes)
			if err != nil {
				return nil, fmt.Errorf("security: token %q: %w", t.Name, err)
			}
			v := strings.TrimSpace(string(b))
			switch {
			case v == "" && t.File != "":
				return nil, fmt.Errorf("security: token %q: file %s is empty", t.Name, t.File)
			case v == "":
				return nil, fmt.Errorf("security: token %q: environment variable %s is not set", t.Name, t.Env)
			}
			tk.hash = sha256.Sum256([]byte(v))
		}
		out = append(out, tk)
	}
	return out, nil
}

// topics: registrations watched on plugin.announce and plugin.goodbye, and
// audit records published under audit. when audit.publish is on.
func (c Config) topics() bus.Topics {
	var uses bus.Permissions
	if c.Audit.Publish {
		uses.Publish = []string{"audit."}
	}
	return bus.Topics{Uses: uses}
}
