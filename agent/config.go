package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/exporters/alertmanager"
)

// EnvPrefix is the prefix of every environment variable the agent reads.
const EnvPrefix = "VITALS_"

// Config is the agent's configuration, read from core.yaml:
//
//	core:
//	  log: {level: info, format: text}
//	  lifecycle: {step_timeout: 15s, stop_timeout: 15s, readiness: required}
//	  api_gateway:
//	    listen: 127.0.0.1:9464
//	    plugins:
//	      message_bus:
//	        enabled: true
//	        required: true
//	        publish_address: tcp://127.0.0.1:5555   # the plugin's own keys
type Config struct {
	Core CoreConfig `yaml:"core"`

	// File is where the config came from, for messages.
	File string `yaml:"-"`

	// fromEnv maps keys whose value came from the environment to the
	// variable that set it, so errors blame the variable, not the file.
	fromEnv map[string]string
}

// envKeys are the agent settings the environment can override.
var envKeys = []struct {
	key, env string
	get      func(*Config) string
}{
	{"core.log.level", "VITALS_LOG_LEVEL", func(c *Config) string { return c.Core.Log.Level }},
	{"core.log.format", "VITALS_LOG_FORMAT", func(c *Config) string { return c.Core.Log.Format }},
	{"core.lifecycle.step_timeout", "VITALS_STEP_TIMEOUT", func(c *Config) string { return c.Core.Lifecycle.StepTimeout.String() }},
	{"core.lifecycle.stop_timeout", "VITALS_STOP_TIMEOUT", func(c *Config) string { return c.Core.Lifecycle.StopTimeout.String() }},
	{"core.lifecycle.readiness", "VITALS_READINESS", func(c *Config) string { return c.Core.Lifecycle.Readiness }},
	{"core.lifecycle.watch_config", "VITALS_WATCH_CONFIG", func(c *Config) string { return fmt.Sprint(c.Watch()) }},
	{"core.api_gateway.listen", "VITALS_LISTEN_ADDRESS", func(c *Config) string { return c.Core.APIGateway.Listen }},
}

// CoreConfig holds the agent settings and the plugin sections.
type CoreConfig struct {
	Log        LogConfig       `yaml:"log"`
	Lifecycle  LifecycleConfig `yaml:"lifecycle"`
	APIGateway GatewayConfig   `yaml:"api_gateway"`
	Alerting   AlertingConfig  `yaml:"alerting"`
}

// AlertingConfig is the agent's own Alertmanager push, off while
// Alertmanagers is empty:
//
//	core:
//	  alerting:
//	    alertmanagers: [http://127.0.0.1:9093]
//	    http_config: {basic_auth: {username: vitals, password_file: /run/secrets/am}}
//	    labels: {instance: gpu-node-1:9464}   # job defaults to vitals, instance to host:port
type AlertingConfig struct {
	// Alertmanagers are base URLs; alerts go to URL/api/v2/alerts.
	Alertmanagers []string `yaml:"alertmanagers"`
	// HTTPConfig is Prometheus' http_config: auth, TLS, proxy.
	HTTPConfig config.HTTPClientConfig `yaml:"http_config"`
	// Labels are added to every alert; job and instance are Prometheus'
	// target labels, which alerts/alertmanager.yml groups and inhibits by.
	Labels map[string]string `yaml:"labels"`
	// EvaluationInterval is how often the alert conditions are evaluated.
	EvaluationInterval Duration `yaml:"evaluation_interval"`
	// ResendInterval is how often a firing alert is sent again; its endsAt
	// is 4 of these ahead, so an agent that died has its alerts resolved.
	ResendInterval Duration `yaml:"resend_interval"`
	// Timeout bounds each POST to each Alertmanager.
	Timeout Duration `yaml:"timeout"`
	// QueueCapacity bounds the alerts waiting to be sent.
	QueueCapacity int `yaml:"queue_capacity"`
}

// Enabled reports whether the push is configured.
func (a AlertingConfig) Enabled() bool { return len(a.Alertmanagers) > 0 }

// LogConfig sets the agent's slog output.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" env:"LOG_LEVEL, overwrite"`
	// Format is text or json.
	Format string `yaml:"format" env:"LOG_FORMAT, overwrite"`
}

// LifecycleConfig bounds the lifecycle steps and sets the readiness policy.
type LifecycleConfig struct {
	// StepTimeout bounds each Initialize, Start and Reload call.
	StepTimeout Duration `yaml:"step_timeout" env:"STEP_TIMEOUT, overwrite"`
	// StopTimeout bounds each Stop call.
	StopTimeout Duration `yaml:"stop_timeout" env:"STOP_TIMEOUT, overwrite"`
	// Readiness is the /readyz policy: "all" wants every enabled plugin
	// running; "required" wants every required plugin running and lets
	// optional ones be failed.
	Readiness string `yaml:"readiness" env:"READINESS, overwrite"`
	// WatchConfig reloads when the config file changes.
	WatchConfig *bool `yaml:"watch_config" env:"WATCH_CONFIG, overwrite"`
}

// GatewayConfig is the agent's HTTP front and its plugins.
type GatewayConfig struct {
	// Listen is the host:port of the HTTP listener.
	Listen string `yaml:"listen" env:"LISTEN_ADDRESS, overwrite"`
	// AllowedHosts are the Host header names the front accepts besides IP
	// literals and localhost: checked always on a loopback listener (DNS
	// rebinding), on others only when set. "*" accepts any; ".example.com"
	// its subdomains.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins are the browser origins (scheme://host[:port]) whose
	// requests are served besides the agent's own; others are refused.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// HTTP bounds the front's connections.
	HTTP HTTPConfig `yaml:"http"`
	// Plugins maps plugin names to their sections.
	Plugins map[string]PluginConfig `yaml:"plugins"`
}

// Readiness policies.
const (
	ReadinessAll      = "all"
	ReadinessRequired = "required"
)

// DefaultConfig returns the agent settings' defaults, with no plugins.
func DefaultConfig() *Config {
	watch := true
	return &Config{Core: CoreConfig{
		Log: LogConfig{Level: "info", Format: "text"},
		Lifecycle: LifecycleConfig{
			StepTimeout: Duration(15 * time.Second),
			StopTimeout: Duration(15 * time.Second),
			Readiness:   ReadinessRequired,
			WatchConfig: &watch,
		},
		APIGateway: GatewayConfig{Listen: "127.0.0.1:9464", HTTP: DefaultHTTPConfig(), Plugins: map[string]PluginConfig{}},
		Alerting: AlertingConfig{
			HTTPConfig:         config.DefaultHTTPClientConfig,
			EvaluationInterval: Duration(alertmanager.DefaultInterval),
			ResendInterval:     Duration(alertmanager.DefaultResendInterval),
			Timeout:            Duration(alertmanager.DefaultTimeout),
			QueueCapacity:      alertmanager.DefaultQueueCapacity,
		},
	}}
}

// Watch reports whether the config file is watched for changes.
func (c *Config) Watch() bool {
	return c.Core.Lifecycle.WatchConfig == nil || *c.Core.Lifecycle.WatchConfig
}

// Plugin returns the named plugin's section; a plugin the file does not
// mention is disabled.
func (c *Config) Plugin(name string) PluginConfig {
	if pc, ok := c.Core.APIGateway.Plugins[name]; ok {
		return pc
	}
	return PluginConfig{Section: Section{path: pluginPath(name), file: c.File}}
}

// PluginConfig is one entry of core.api_gateway.plugins.
type PluginConfig struct {
	// Enabled starts the plugin. Listing a plugin enables it unless it says
	// enabled: false.
	Enabled bool
	// Required makes a failure of the plugin abort startup.
	Required bool
	// Section is the plugin's own keys.
	Section Section

	line int
}

// UnmarshalYAML takes enabled and required and keeps the rest of the mapping
// as the plugin's own section.
func (pc *PluginConfig) UnmarshalYAML(node ast.Node) error {
	pc.Enabled = true
	pc.line = node.GetToken().Position.Line
	if _, ok := node.(*ast.NullNode); ok {
		return nil
	}
	m, ok := node.(*ast.MappingNode)
	if !ok {
		return errorAt(node.GetToken(), "", "plugin section must be a mapping of keys, got %s", nodeWords(node))
	}
	for _, kv := range m.Values {
		switch kv.Key.String() {
		case "enabled", "required":
			b, err := strconv.ParseBool(kv.Value.String())
			if _, isBool := kv.Value.(*ast.BoolNode); !isBool || err != nil {
				return errorAt(kv.Value.GetToken(), "", "%s must be true or false, got %q", kv.Key.String(), kv.Value.String())
			}
			if kv.Key.String() == "enabled" {
				pc.Enabled = b
			} else {
				pc.Required = b
			}
		}
	}
	if own := ownKeys(m); own != nil {
		pc.Section.node = own
	}
	return nil
}

// ownKeys returns a plugin's mapping without enabled and required, which
// are the agent's: the plugin's own section, nil when it has no keys.
func ownKeys(m *ast.MappingNode) *ast.MappingNode {
	own := *m
	own.Values = nil
	for _, kv := range m.Values {
		if k := kv.Key.String(); k != "enabled" && k != "required" {
			own.Values = append(own.Values, kv)
		}
	}
	if len(own.Values) == 0 {
		return nil
	}
	return &own
}

// Duration is a time.Duration written as "15s" in YAML and environment.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	v, err := time.ParseDuration(strings.Trim(node.String(), `"'`))
	if err != nil {
		return errorAt(node.GetToken(), "", "invalid duration %q, want e.g. 15s or 500ms", node.String())
	}
	*d = Duration(v)
	return nil
}

// EnvDecode parses a Go duration string from the environment.
func (d *Duration) EnvDecode(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q, want e.g. 15s or 500ms", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration for JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// LoadFile reads, parses and validates a config file, then applies the
// VITALS_ environment overrides found by lookup (nil means the process
// environment).
func LoadFile(ctx context.Context, path string, reg *Registry, lookup envconfig.Lookuper) (*Config, error) {
	data, err := ReadFile(path, MaxConfigBytes)
	if err != nil {
		return nil, err
	}
	return Parse(ctx, path, data, reg, lookup)
}

// Parse is LoadFile for config text already in memory; name is used in
// messages.
func Parse(ctx context.Context, name string, data []byte, reg *Registry, lookup envconfig.Lookuper) (*Config, error) {
	cfg := DefaultConfig()
	cfg.File = name
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	// Every problem is reported in one run: decoding goes on past a bad
	// key, and validation runs on what decoded.
	var errs []error
	if root != nil {
		errs = decodeAll(name, "", root, cfg)
	}
	if cfg.Core.APIGateway.Plugins == nil {
		cfg.Core.APIGateway.Plugins = map[string]PluginConfig{}
	}
	text := bytes.Clone(data)
	for pname, pc := range cfg.Core.APIGateway.Plugins {
		if pc.line == 0 {
			pc.Enabled = true // "name:" with nothing after it
		}
		if pc.Section.node != nil {
			// The section keeps the file's text, not its tree: the tree of
			// a large section is ten times the text, for as long as the
			// config runs.
			pc.Section.node, pc.Section.src = nil, &configSource{name: name, data: text, plugin: pname}
		}
		pc.Section.path, pc.Section.file = pluginPath(pname), name
		pc.Section.env = newSectionEnv(lookup)
		cfg.Core.APIGateway.Plugins[pname] = pc
	}
	if err := cfg.applyEnv(ctx, lookup); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.validate(root, reg); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// applyEnv overrides agent settings from VITALS_* variables and plugin
// switches from VITALS_PLUGINS_ENABLED ("name:true,other:false") and
// VITALS_PLUGINS_REQUIRED.
func (c *Config) applyEnv(ctx context.Context, lookup envconfig.Lookuper) error {
	if lookup == nil {
		lookup = envconfig.OsLookuper()
	}
	before := map[string]string{}
	for _, k := range envKeys {
		before[k.key] = k.get(c)
	}
	var errs []error
	keyOf := func(env string) string {
		for _, k := range envKeys {
			if k.env == env {
				return k.key
			}
		}
		return ""
	}
	for _, target := range []any{&c.Core.Log, &c.Core.Lifecycle, &c.Core.APIGateway} {
		errs = append(errs, processEnv(ctx, target, lookup, keyOf)...)
	}
	lookup = envconfig.PrefixLookuper(EnvPrefix, lookup)
	c.fromEnv = map[string]string{}
	for _, k := range envKeys {
		if k.get(c) != before[k.key] {
			c.fromEnv[k.key] = k.env
		}
	}
	var enabled struct {
		V map[string]bool `env:"PLUGINS_ENABLED"`
	}
	var required struct {
		V map[string]bool `env:"PLUGINS_REQUIRED"`
	}
	for env, target := range map[string]any{"VITALS_PLUGINS_ENABLED": &enabled, "VITALS_PLUGINS_REQUIRED": &required} {
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: lookup}); err != nil {
			val, _ := lookup.Lookup(strings.TrimPrefix(env, EnvPrefix))
			errs = append(errs, &ConfigError{File: "environment", Key: env, Msg: fmt.Sprintf(`want "name:true,other:false", got %q`, val)})
		}
	}
	for name, on := range enabled.V {
		if _, inFile := c.Core.APIGateway.Plugins[name]; !inFile {
			c.fromEnv[pluginPath(name)] = "VITALS_PLUGINS_ENABLED" // an unknown name is the variable's
		}
		pc := c.Plugin(name)
		if pc.Section.env == nil {
			pc.Section.env = newSectionEnv(lookup)
		}
		pc.Enabled = on
		c.Core.APIGateway.Plugins[name] = pc
	}
	for name, req := range required.V {
		if _, inFile := c.Core.APIGateway.Plugins[name]; !inFile {
			c.fromEnv[pluginPath(name)] = "VITALS_PLUGINS_REQUIRED"
		}
		pc := c.Plugin(name)
		if pc.Section.env == nil {
			pc.Section.env = newSectionEnv(lookup)
		}
		pc.Required = req
		c.Core.APIGateway.Plugins[name] = pc
	}
	return errors.Join(errs...)
}

func (c *Config) validate(root ast.Node, reg *Registry) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		e := &ConfigError{File: c.File, Key: key, Msg: fmt.Sprintf(format, args...)}
		if env, ok := c.fromEnv[key]; ok {
			e.File, e.Key = "environment", env+" ("+key+")"
		} else if n := lookup(root, key); n != nil {
			e.Line, e.Column = n.GetToken().Position.Line, n.GetToken().Position.Column
		}
		errs = append(errs, e)
	}
	core := c.Core
	switch core.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("core.log.level", "unknown level %q, want debug, info, warn or error", core.Log.Level)
	}
	switch core.Log.Format {
	case "text", "json":
	default:
		bad("core.log.format", "unknown format %q, want text or json", core.Log.Format)
	}
	if d := core.Lifecycle.StepTimeout.D(); d <= 0 || d > time.Hour {
		bad("core.lifecycle.step_timeout", "must be between 0 and 1h, got %s", d)
	}
	if d := core.Lifecycle.StopTimeout.D(); d <= 0 || d > time.Hour {
		bad("core.lifecycle.stop_timeout", "must be between 0 and 1h, got %s", d)
	}
	switch core.Lifecycle.Readiness {
	case ReadinessAll, ReadinessRequired:
	default:
		bad("core.lifecycle.readiness", "unknown policy %q, want all or required", core.Lifecycle.Readiness)
	}
	if host, port, err := net.SplitHostPort(core.APIGateway.Listen); err != nil {
		bad("core.api_gateway.listen", "invalid address %q: want host:port", core.APIGateway.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("core.api_gateway.listen", "invalid port %q in %q", port, core.APIGateway.Listen)
	} else {
		_ = host
	}
	validateGateway(core.APIGateway, bad)

	core.Alerting.validate(bad)

	names := make([]string, 0, len(core.APIGateway.Plugins))
	for name := range core.APIGateway.Plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	enabled := map[string]Plugin{}
	for _, name := range names {
		pc := core.APIGateway.Plugins[name]
		key := pluginPath(name)
		if reg == nil {
			continue
		}
		if !reg.Has(name) {
			if s := closest(name, reg.Names()); s != "" {
				bad(key, "unknown plugin %q; did you mean %q?", name, s)
			} else {
				bad(key, "unknown plugin %q; known plugins: %s", name, strings.Join(reg.Names(), ", "))
			}
			continue
		}
		// Build every configured plugin, enabled or not, so a section that
		// does not decode (an unknown key, a wrong type) is found before
		// it is switched on. A disabled plugin's section need not be
		// complete: what its own validation says counts once it is enabled.
		p, err := reg.New(name, pc.Section)
		if err != nil {
			if pc.Enabled || isDecodeError(err) {
				errs = append(errs, asConfigError(c.File, key, lookup(root, key), err))
			}
			continue
		}
		if pc.Enabled {
			enabled[name] = p
		}
	}
	if len(errs) == 0 && reg != nil {
		if _, _, err := planPlugins(enabled, hostServices); err != nil {
			errs = append(errs, &ConfigError{File: c.File, Key: "core.api_gateway.plugins", Msg: err.Error()})
		} else if err := checkPeers(enabled); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validate checks core.alerting; bad reports a problem at a key.
func (a AlertingConfig) validate(bad func(key, format string, args ...any)) {
	const base = "core.alerting"
	seen := map[string]bool{}
	for i, u := range a.Alertmanagers {
		key := fmt.Sprintf("%s.alertmanagers[%d]", base, i)
		if _, err := alertmanager.ParseURL(u); err != nil {
			bad(key, "invalid Alertmanager URL %q: %v", u, err)
		} else if seen[u] {
			bad(key, "%q is listed twice", u)
		}
		seen[u] = true
	}
	if err := a.HTTPConfig.Validate(); err != nil {
		bad(base+".http_config", "%v", err)
	} else if a.Enabled() {
		// Built once here so that a CA or key file that cannot be read
		// rejects the config instead of failing the push later.
		if _, err := config.NewClientFromConfig(a.HTTPConfig, "alertmanager"); err != nil {
			bad(base+".http_config", "%v", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.Labels)) {
		switch {
		case !model.LabelName(name).IsValid() || strings.HasPrefix(name, "__"):
			bad(base+".labels", "invalid label name %q: want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __", name)
		case name == "alertname":
			bad(base+".labels", "alertname is the alert's own; it cannot be set")
		case a.Labels[name] == "":
			bad(base+".labels."+name, "empty value; leave the label out instead")
		}
	}
	for _, d := range []struct {
		key    string
		v      Duration
		lo, hi time.Duration
	}{
		{"evaluation_interval", a.EvaluationInterval, 100 * time.Millisecond, 10 * time.Minute},
		{"resend_interval", a.ResendInterval, time.Second, time.Hour},
		{"timeout", a.Timeout, 100 * time.Millisecond, 5 * time.Minute},
	} {
		if d.v.D() < d.lo || d.v.D() > d.hi {
			bad(base+"."+d.key, "must be between %s and %s, got %s", d.lo, d.hi, d.v)
		}
	}
	if a.QueueCapacity < 1 || a.QueueCapacity > 1_000_000 {
		bad(base+".queue_capacity", "must be 1 to 1000000, got %d", a.QueueCapacity)
	}
}
