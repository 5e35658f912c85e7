package encryption

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/vitals-dev/vitals/agent"
)

// Config is the encryption section of core.yaml:
//
//	encryption:
//	  active_key: k2                 # seals new records; default: the last key
//	  keys:                          # every key that may open old records
//	    - id: k1
//	      file: /etc/vitals/k1.key   # 32 bytes: raw, hex or base64
//	    - id: k2
//	      env: VITALS_ENCRYPTION_KEY_K2
//	  tls:                           # optional: HTTPS on the agent's listener
//	    cert_file: /etc/vitals/tls.crt
//	    key_file: /etc/vitals/tls.key
type Config struct {
	ActiveKey string      `yaml:"active_key"`
	Keys      []KeyConfig `yaml:"keys"`
	TLS       *TLSConfig  `yaml:"tls"`

	secrets agent.Secrets // reads the keys, from the config's environment
}

// KeyConfig is one key of the ring, read from a file or an environment
// variable.
type KeyConfig struct {
	ID   string `yaml:"id"`
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// TLSConfig is the certificate and key of the HTTP listener.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultConfig returns the defaults that a section overrides.
func DefaultConfig() Config { return Config{} }

var keyIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`) })

func (c *Config) validate(s agent.Section) error {
	var errs []error
	bad := func(err error) { errs = append(errs, err) }
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad(s.Errorf("tls", "set both cert_file and key_file"))
	}
	if len(c.Keys) == 0 {
		bad(s.Errorf("keys", "at least one key is needed"))
		return errors.Join(errs...)
	}
	seen := map[string]bool{}
	for i, k := range c.Keys {
		key := fmt.Sprintf("keys[%d]", i)
		if !keyIDRE().MatchString(k.ID) {
			bad(s.Errorf(key+".id", "key id %q must be 1..64 of A-Z a-z 0-9 _ . -", k.ID))
		} else if seen[k.ID] {
			bad(s.Errorf(key+".id", "duplicate key id %q", k.ID))
		}
		seen[k.ID] = true
		if (k.File == "") == (k.Env == "") {
			bad(s.Errorf(key, "set exactly one of file and env"))
		}
	}
	if c.ActiveKey == "" {
		c.ActiveKey = c.Keys[len(c.Keys)-1].ID
	} else if !seen[c.ActiveKey] {
		bad(s.Errorf("active_key", "no key with id %q in keys", c.ActiveKey))
	}
	return errors.Join(errs...)
}

// decode decodes and validates a section.
func decode(s agent.Section) (Config, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return cfg, err
	}
	if err := cfg.validate(s); err != nil {
		return cfg, err
	}
	cfg.secrets = s.Secrets()
	for i := range cfg.Keys {
		cfg.Keys[i].File = s.Resolve(cfg.Keys[i].File)
	}
	if cfg.TLS != nil {
		cfg.TLS.CertFile, cfg.TLS.KeyFile = s.Resolve(cfg.TLS.CertFile), s.Resolve(cfg.TLS.KeyFile)
	}
	return cfg, nil
}

// maxKeyFileBytes bounds a key file: 64 hex digits and a line break fit
// many times over.
const maxKeyFileBytes = 4096

// material reads a key: 32 raw bytes, or 64 hex digits, or base64 of 32
// bytes (standard or URL alphabet, padded or not).
func (k KeyConfig) material(secrets agent.Secrets) ([]byte, error) {
	raw, err := secrets.Read(k.File, k.Env, maxKeyFileBytes)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	if len(raw) == KeySize {
		return raw, nil
	}
	t := strings.TrimSpace(string(raw))
	if b, err := hex.DecodeString(t); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(t); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("key %q: want %d bytes, raw or as hex or base64", k.ID, KeySize)
}
