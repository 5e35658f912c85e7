package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
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
	own := *m
	own.Values = nil
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
		default:
			own.Values = append(own.Values, kv)
		}
	}
	if len(own.Values) > 0 {
		pc.Section.node = &own
	}
	return nil
}

// Section is a plugin's own part of the config. It keeps the parsed YAML so
// that the plugin's decode and validation errors name the file, line and
// full key.
type Section struct {
	node ast.Node
	path string // e.g. core.api_gateway.plugins.message_bus
	file string
	env  *sectionEnv // VITALS_ overrides of the section's keys; nil: none
}

// sectionEnv is where a section's environment overrides come from, and
// which keys they set, so errors about those keys blame the variable.
type sectionEnv struct {
	lookup envconfig.Lookuper
	mu     sync.Mutex
	set    map[string]string // key below the section -> variable
}

func newSectionEnv(lookup envconfig.Lookuper) *sectionEnv {
	return &sectionEnv{lookup: lookup, set: map[string]string{}}
}

// NewSection parses YAML text as a plugin section, for tests and for plugins
// built outside a config file.
func NewSection(yamlText string) (Section, error) {
	s, err := ParseSection("<section>", []byte(yamlText))
	s.path = "section"
	return s, err
}

// ParseSection parses a YAML document of its own (a drop-in manifest, say)
// as a Section, so decoding it reports file, line and key like config does.
func ParseSection(file string, data []byte) (Section, error) {
	s := Section{file: file}
	if strings.TrimSpace(string(data)) == "" {
		return s, nil
	}
	body, err := parseYAML(file, data)
	if err != nil || body == nil {
		return s, err
	}
	if _, ok := body.(*ast.MappingNode); !ok {
		e := errorAt(body.GetToken(), "", "want a mapping of keys, got %s", nodeWords(body))
		e.File = file
		return s, e
	}
	s.node = body
	return s, nil
}

// File returns the file the section was read from.
func (s Section) File() string { return s.file }

// Empty reports whether the section has no keys.
func (s Section) Empty() bool { return s.node == nil }

// Path returns the section's key path in the config.
func (s Section) Path() string { return s.path }

// Decode decodes the section into v, a pointer to a struct that holds the
// defaults. Unknown keys and wrong types are errors naming the key and line.
//
// In a section of a loaded config (LoadFile, Parse), the environment then
// wins over the file, as for the agent settings: a top-level field of v
// tagged `env:"NAME, overwrite"` (go-envconfig) takes the value of
// VITALS_NAME when it is set, and Errorf about that field's key names the
// variable instead of a line. Sections made otherwise (NewSection,
// ParseSection, the zero Section) read no environment.
func (s Section) Decode(v any) error {
	var errs []error
	if s.node != nil {
		errs = decodeAll(s.file, s.path, s.node, v)
	}
	if err := s.applyEnv(v); err != nil {
		errs = append(errs, err)
	}
	return decodeError(errors.Join(errs...))
}

// decodeError marks the ConfigErrors in err as coming from Decode.
func decodeError(err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.decode = true
	}
	return err
}

// isDecodeError reports whether err says a section did not decode, as
// opposed to a plugin's own validation of decoded values.
func isDecodeError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce) && ce.decode
}

// applyEnv applies the VITALS_ overrides of v's env-tagged fields.
func (s Section) applyEnv(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	vars := map[string]string{} // variable -> key
	t := rv.Elem().Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name = strings.TrimSpace(name); name != "" && key != "" && key != "-" {
			vars[EnvPrefix+name] = key
		}
	}
	if len(vars) == 0 || s.env == nil {
		return nil
	}
	var look envconfig.Lookuper = envconfig.OsLookuper()
	if s.env.lookup != nil {
		look = s.env.lookup
	}
	if errs := processEnv(context.Background(), v, look, func(env string) string { return joinKey(s.path, vars[env]) }); len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for env, key := range vars {
		if _, ok := look.Lookup(env); ok {
			s.env.set[key] = env
		}
	}
	return nil
}

// Errorf returns an error about one key of the section, naming its line
// (or the environment variable that set it). The key is a dotted path
// below the section ("retention.max_age").
func (s Section) Errorf(key, format string, args ...any) error {
	e := &ConfigError{File: s.file, Key: joinKey(s.path, key), Msg: fmt.Sprintf(format, args...)}
	if s.env != nil {
		s.env.mu.Lock()
		env, ok := s.env.set[key]
		s.env.mu.Unlock()
		if ok {
			e.File, e.Key = "environment", env+" ("+e.Key+")"
			return e
		}
	}
	if n := lookup(s.node, key); n != nil {
		e.Line, e.Column = n.GetToken().Position.Line, n.GetToken().Position.Column
	}
	return e
}

// Equal reports whether two sections hold the same keys and values.
func (s Section) Equal(o Section) bool {
	var a, b any
	if s.node != nil {
		_ = yaml.NodeToValue(s.node, &a)
	}
	if o.node != nil {
		_ = yaml.NodeToValue(o.node, &b)
	}
	return reflect.DeepEqual(a, b)
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

// ConfigError is one problem in a config, located by file, line and key.
type ConfigError struct {
	File   string
	Line   int // 0 when the problem has no line (an environment variable)
	Column int
	Key    string
	Msg    string

	cause  error // what the file system said, for errors.Is
	decode bool  // from Section.Decode (see isDecodeError)
}

// Unwrap returns the file system's error, if any (os.ErrNotExist, say).
func (e *ConfigError) Unwrap() error { return e.cause }

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

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
	for pname, pc := range cfg.Core.APIGateway.Plugins {
		if pc.line == 0 {
			pc.Enabled = true // "name:" with nothing after it
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

// planPlugins orders built plugins by their metadata and the services they
// provide (see plan); host names the services the host provides.
func planPlugins(plugins map[string]Plugin, host []string) ([]string, map[string][]string, error) {
	names := make([]string, 0, len(plugins))
	for name := range plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	metas := make([]Metadata, 0, len(names))
	provided := map[string]string{}
	for _, name := range names {
		p := plugins[name]
		metas = append(metas, p.Metadata())
		if sp, ok := p.(ServiceProvider); ok {
			for _, s := range sp.Services() {
				provided[s] = name
			}
		}
	}
	return plan(metas, provided, host)
}

// checkPeers asks every PeerChecker among plugins about the others, in
// name order, and joins what they say.
func checkPeers(plugins map[string]Plugin) error {
	names := make([]string, 0, len(plugins))
	for name := range plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		if pc, ok := plugins[name].(PeerChecker); ok {
			if err := pc.CheckPeers(plugins); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

var hostServices = []string{ServiceMetrics, ServiceTracerProvider, ServiceEvents, ServicePlugins}

// processEnv applies the VITALS_ variables of target's env-tagged fields
// (a pointer to a struct) one variable at a time, so that every bad value
// is reported, each naming its variable and the key it sets (keyOf).
func processEnv(ctx context.Context, target any, lookup envconfig.Lookuper, keyOf func(env string) string) []error {
	var errs []error
	for _, name := range envNames(reflect.TypeOf(target).Elem()) {
		env := EnvPrefix + name
		val, ok := lookup.Lookup(env)
		if !ok {
			continue
		}
		one := envconfig.MapLookuper(map[string]string{name: val})
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: one, DefaultNoInit: true}); err != nil {
			key := env
			if k := keyOf(env); k != "" {
				key += " (" + k + ")"
			}
			errs = append(errs, &ConfigError{File: "environment", Key: key, Msg: plainEnvMessage(err, val)})
		}
	}
	return errs
}

// envNames lists the variables (without prefix) of t's env-tagged fields,
// in nested structs too, as go-envconfig finds them.
func envNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		} else if f.Type.Kind() == reflect.Struct && f.IsExported() {
			out = append(out, envNames(f.Type)...)
		}
	}
	return out
}

// plainEnvMessage says what is wrong with an environment value without Go
// function or type names.
func plainEnvMessage(err error, val string) string {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		want := "a number"
		switch ne.Func {
		case "ParseBool":
			want = "true or false"
		case "ParseInt":
			want = "an integer"
		case "ParseUint":
			want = "a non-negative integer"
		}
		if errors.Is(ne.Err, strconv.ErrRange) {
			return fmt.Sprintf("%q is out of range for %s", val, want)
		}
		return fmt.Sprintf("want %s, got %q", want, val)
	}
	return envMessage(err)
}

// envMessage turns go-envconfig's "Field: reason" into the reason alone;
// the caller names the variable.
func envMessage(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": "); ok {
		return rest
	}
	return msg
}

func pluginPath(name string) string { return "core.api_gateway.plugins." + name }

func joinKey(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b // an index: targets[2]
	}
	return a + "." + b
}

func errorAt(tk *token.Token, key, format string, args ...any) *ConfigError {
	e := &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	if tk != nil && tk.Position != nil {
		e.Line, e.Column = tk.Position.Line, tk.Position.Column
	}
	return e
}

// yamlError turns a go-yaml error into a ConfigError with file, line and the
// full key path of the offending node below base.
func yamlError(file, base string, root ast.Node, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		out := *ce
		if out.File == "" {
			out.File = file
		}
		if out.Key == "" {
			out.Key = joinKey(base, keyAt(root, out.Line, out.Column))
		}
		return &out
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		var got string
		if tk := ye.GetToken(); tk != nil {
			got = tk.Value
		}
		e := &ConfigError{File: file, Msg: plainMessage(ye.GetMessage(), got)}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
			e.Key = joinKey(base, keyAt(root, e.Line, e.Column))
		}
		return e
	}
	return &ConfigError{File: file, Key: base, Msg: err.Error()}
}

func asConfigError(file, key string, n ast.Node, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	e := &ConfigError{File: file, Key: key, Msg: err.Error()}
	if n != nil {
		e.Line, e.Column = n.GetToken().Position.Line, n.GetToken().Position.Column
	}
	return e
}

// lookup finds the node at a dotted key path below n; a part may index a
// sequence ("targets[2].endpoint"). For a mapping key it returns the key
// node: that is where a reader looks.
func lookup(n ast.Node, key string) ast.Node {
	if n == nil || key == "" {
		return n
	}
	parts := strings.Split(key, ".")
	cur := n
	for i, part := range parts {
		name, index := part, -1
		if open := strings.IndexByte(part, '['); open > 0 && strings.HasSuffix(part, "]") {
			if v, err := strconv.Atoi(part[open+1 : len(part)-1]); err == nil {
				name, index = part[:open], v
			}
		}
		m, ok := cur.(*ast.MappingNode)
		if !ok {
			return nil
		}
		var keyNode, next ast.Node
		for _, kv := range m.Values {
			if kv.Key.String() == name {
				keyNode, next = kv.Key, kv.Value
			}
		}
		if next == nil {
			return nil
		}
		if index >= 0 {
			seq, ok := next.(*ast.SequenceNode)
			if !ok || index >= len(seq.Values) {
				return keyNode
			}
			next = seq.Values[index]
			keyNode = next
		}
		if i == len(parts)-1 {
			return keyNode
		}
		cur = next
	}
	return cur
}

// keyAt returns the dotted key path of the mapping key or value at line:col.
func keyAt(n ast.Node, line, col int) string {
	var walk func(n ast.Node, path string) (string, bool)
	walk = func(n ast.Node, path string) (string, bool) {
		switch v := n.(type) {
		case *ast.MappingNode:
			for _, kv := range v.Values {
				p := joinKey(path, kv.Key.String())
				kt := kv.Key.GetToken().Position
				if kt.Line == line && kt.Column == col {
					return p, true
				}
				if kv.Value != nil {
					vt := kv.Value.GetToken().Position
					if vt.Line == line && vt.Column == col {
						return p, true
					}
					if r, ok := walk(kv.Value, p); ok {
						return r, true
					}
				}
			}
		case *ast.MappingValueNode:
			return walk(&ast.MappingNode{Values: []*ast.MappingValueNode{v}}, path)
		case *ast.SequenceNode:
			for i, item := range v.Values {
				p := fmt.Sprintf("%s[%d]", path, i)
				t := item.GetToken().Position
				if t.Line == line && t.Column == col {
					return p, true
				}
				if r, ok := walk(item, p); ok {
					return r, true
				}
			}
		}
		return "", false
	}
	if n == nil {
		return ""
	}
	p, _ := walk(n, "")
	return p
}
