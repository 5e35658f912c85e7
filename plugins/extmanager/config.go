package extmanager

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/common/config"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/discovery"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// Config is the extmanager's section of core.yaml:
//
//	extmanager:
//	  targets:                       # static AI plugins
//	    - id: local-ollama
//	      endpoint: http://127.0.0.1:11434
//	      kind: auto                 # or openai, llamacpp, vllm, ollama, tgi, tei, kserve
//	      model: llama3.2:1b         # the model synthetic checks use
//	      metrics_url: http://127.0.0.1:8002/metrics  # when not at the endpoint's /metrics (Triton)
//	      labels: {team: search}
//	      depends_on: [embedder]
//	      http_config:               # Prometheus' http_config: credentials, TLS, proxy
//	        authorization: {credentials_file: /run/secrets/ollama-key}
//	  directory: plugins.d           # drop-in manifests, relative to core.yaml; "" turns it off
//	  detection: {attempts: 4, timeout: 5s, concurrency: 4, max_backoff: 5s, redetect_interval: 10m}
//	  bus: {enabled: true, lost_after: 3, deregister_after: 12, default_heartbeat: 5s}
//	  health: {interval: 10s, timeout: 5s, synthetic: false}  # every key: health.Config
//	  file_sd_configs: [{files: [targets/*.json]}]  # and http_sd_configs, dns_sd_configs,
//	  relabel_configs: [...]                        # kubernetes_sd_configs: discovery.Config
//	  http_config: {tls_config: {ca_file: ca.pem}}  # of the discovered targets' requests
//	  shard: {count: 3, index: 0}    # or VITALS_SHARD=0/3; the index defaults to the pod ordinal
//	  probe: {enabled: true, modules: {default: {probes: [liveness, readiness], timeout: 10s}}}  # GET /probe: ProbeConfig
type Config struct {
	Targets   []Target        `yaml:"targets"`
	Directory string          `yaml:"directory"`
	Detection DetectionConfig `yaml:"detection"`
	Bus       BusConfig       `yaml:"bus"`
	Health    health.Config   `yaml:"health"`
	// Discovery holds the Prometheus-style discovery keys, at the top of
	// the section as in a scrape config.
	Discovery discovery.Config `yaml:",inline"`
	// HTTPConfig is the http_config of the discovered targets' requests,
	// beside the discovery keys as in a Prometheus scrape config.
	HTTPConfig *config.HTTPClientConfig `yaml:"http_config"`
	// Shard splits the config targets, the manifests and the discovered
	// targets among agents that share one config.
	Shard discovery.ShardConfig `yaml:"shard" env:"SHARD, overwrite"`
	// Probe is GET /probe, for checks that Prometheus drives.
	Probe ProbeConfig `yaml:"probe"`

	shard discovery.Shard // Shard, resolved
}

// Target is one AI plugin given in config or in a manifest file.
type Target struct {
	ID       string `yaml:"id"`
	Endpoint string `yaml:"endpoint"`
	Kind     string `yaml:"kind"`
	Model    string `yaml:"model"`
	// MetricsURL is where the server's Prometheus metrics are when not
	// at the endpoint's /metrics (Triton serves them on a port of their
	// own); a URL with no path gets /metrics.
	MetricsURL string            `yaml:"metrics_url"`
	PID        int               `yaml:"pid"`
	Labels     map[string]string `yaml:"labels"`
	DependsOn  []string          `yaml:"depends_on"`
	// HTTPConfig is Prometheus' http_config (prometheus/common's
	// HTTPClientConfig, the same keys): how every request to the server
	// is made, detection, probes and signals alike.
	HTTPConfig *config.HTTPClientConfig `yaml:"http_config"`
}

// DetectionConfig tunes capability detection.
type DetectionConfig struct {
	// Attempts bounds the rounds of one detection (each round asks every
	// family once).
	Attempts int            `yaml:"attempts"`
	Timeout  agent.Duration `yaml:"timeout"`
	// Concurrency bounds the detections that run at once.
	Concurrency int `yaml:"concurrency"`
	// MaxBackoff caps the wait between detections of a server whose kind
	// is not known yet (it failed, or nothing recognised it): they repeat
	// from 1s, doubling, until one succeeds. It is also the shortest gap
	// between the re-detections that failing probes ask for.
	MaxBackoff agent.Duration `yaml:"max_backoff"`
	// RedetectInterval is how often every identified server is asked
	// again, to see version and model changes nothing else showed.
	RedetectInterval agent.Duration `yaml:"redetect_interval"`
}

// BusConfig tunes discovery of plugin processes on the bus.
type BusConfig struct {
	Enabled bool `yaml:"enabled"`
	// LostAfter is how many heartbeat periods may pass before a plugin is
	// marked lost.
	LostAfter int `yaml:"lost_after"`
	// DeregisterAfter is how many periods before a silent plugin is removed.
	DeregisterAfter int `yaml:"deregister_after"`
	// DefaultHeartbeat is the period of plugins that announce none.
	DefaultHeartbeat agent.Duration `yaml:"default_heartbeat"`
	// MaxPlugins bounds the bus plugins in the catalog; announcements past
	// it are dropped and counted.
	MaxPlugins int `yaml:"max_plugins"`
	// MaxPluginsPerPeer bounds the bus plugins one bus identity (a PLAIN
	// user, or one connection under NULL security) may hold.
	MaxPluginsPerPeer int `yaml:"max_plugins_per_peer"`
	// AllowedEndpoints are the hosts an announced endpoint may name, so
	// that a bus client cannot make the agent send requests anywhere:
	// "loopback" (127.0.0.0/8, ::1, localhost), "peer" (the address the
	// announcement came from), an IP address, a CIDR prefix, or a host
	// name (matched exactly, case-insensitively).
	AllowedEndpoints []string `yaml:"allowed_endpoints"`
}

// DefaultConfig returns the defaults a section overrides.
func DefaultConfig() Config {
	return Config{
		Directory: "plugins.d",
		Detection: DetectionConfig{
			Attempts: 4, Timeout: agent.Duration(5 * time.Second), Concurrency: 4,
			MaxBackoff: agent.Duration(5 * time.Second), RedetectInterval: agent.Duration(10 * time.Minute),
		},
		Bus: BusConfig{
			Enabled: true, LostAfter: 3, DeregisterAfter: 12, DefaultHeartbeat: agent.Duration(5 * time.Second),
			MaxPlugins: 256, MaxPluginsPerPeer: 16, AllowedEndpoints: []string{AllowLoopback, AllowPeer},
		},
		Health: health.DefaultConfig(),
		Probe:  defaultProbeConfig(),
	}
}

// decodeConfig reads and checks a section; directory becomes absolute,
// relative to the config file.
func decodeConfig(s agent.Section) (Config, error) {
	cfg := DefaultConfig()
	if err := s.Decode(&cfg); err != nil {
		return cfg, err
	}
	// Every bad value is reported, not only the first.
	var errs []error
	bad := func(err error) { errs = append(errs, err) }
	seen := map[string]bool{}
	for i, t := range cfg.Targets {
		key := fmt.Sprintf("targets[%d]", i)
		if _, err := t.spec(catalog.SourceConfig); err != nil {
			bad(s.Place(key, err))
		} else if seen[t.ID] {
			bad(s.Errorf(key, "duplicate id %q", t.ID))
		} else if err := checkHTTPConfig(t.HTTPConfig, fileDir(s)); err != nil {
			bad(s.Errorf(key+".http_config", "%v", err))
		}
		seen[t.ID] = true
	}
	d := cfg.Detection
	if d.Attempts < 1 || d.Attempts > 20 {
		bad(s.Errorf("detection.attempts", "must be 1 to 20, got %d", d.Attempts))
	}
	if d.Timeout.D() <= 0 {
		bad(s.Errorf("detection.timeout", "must be positive, got %s", d.Timeout))
	}
	if d.Concurrency < 1 || d.Concurrency > 256 {
		bad(s.Errorf("detection.concurrency", "must be 1 to 256, got %d", d.Concurrency))
	}
	if d.MaxBackoff.D() < time.Second || d.MaxBackoff.D() > 5*time.Minute {
		bad(s.Errorf("detection.max_backoff", "must be 1s to 5m, got %s", d.MaxBackoff))
	}
	if d.RedetectInterval.D() < time.Second {
		bad(s.Errorf("detection.redetect_interval", "must be at least 1s, got %s", d.RedetectInterval))
	}
	b := cfg.Bus
	if b.LostAfter < 1 {
		bad(s.Errorf("bus.lost_after", "must be at least 1, got %d", b.LostAfter))
	}
	if b.DeregisterAfter <= b.LostAfter {
		bad(s.Errorf("bus.deregister_after", "must be more than lost_after (%d), got %d", b.LostAfter, b.DeregisterAfter))
	}
	if b.DefaultHeartbeat.D() < 10*time.Millisecond {
		bad(s.Errorf("bus.default_heartbeat", "must be at least 10ms, got %s", b.DefaultHeartbeat))
	}
	if b.MaxPlugins < 1 || b.MaxPlugins > 100_000 {
		bad(s.Errorf("bus.max_plugins", "must be 1 to 100000, got %d", b.MaxPlugins))
	}
	if b.MaxPluginsPerPeer < 1 || b.MaxPluginsPerPeer > b.MaxPlugins {
		bad(s.Errorf("bus.max_plugins_per_peer", "must be 1 to max_plugins (%d), got %d", b.MaxPlugins, b.MaxPluginsPerPeer))
	}
	for i, a := range b.AllowedEndpoints {
		if err := checkAllowed(a); err != nil {
			bad(s.Errorf(fmt.Sprintf("bus.allowed_endpoints[%d]", i), "%v", err))
		}
	}
	if err := cfg.Health.Validate(); err != nil {
		bad(s.Place("health", err))
	}
	for id := range cfg.Health.Plugins {
		if err := catalog.ValidID(id); err != nil {
			bad(s.Errorf("health.plugins."+id, "%v", err))
		}
	}
	if err := checkHTTPConfig(cfg.HTTPConfig, fileDir(s)); err != nil {
		bad(s.Errorf("http_config", "%v", err))
	}
	if err := cfg.Discovery.Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad(s.Place("", e))
		}
	}
	// $(NAME) in kubernetes_sd selectors: a DaemonSet's node name.
	if err := cfg.Discovery.ExpandSelectors(func(name string) (string, error) {
		b, err := s.Secrets().Read("", name, 4096)
		return string(b), err
	}); err != nil {
		for _, e := range unjoin(err) {
			bad(s.Place("", e))
		}
	}
	errs = append(errs, cfg.Probe.validate(s)...)
	host, _ := os.Hostname()
	if sh, err := cfg.Shard.Resolve(host); err != nil {
		bad(s.Errorf("shard", "%v", err))
	} else {
		cfg.shard = sh
	}
	if s.File() != "" && !cfg.Discovery.Empty() {
		// Relative paths (file_sd files, TLS and credential files) are
		// relative to the config file, as in Prometheus.
		cfg.Discovery.SetDirectory(s.Dir())
	}
	cfg.Health.History.Path = s.Resolve(cfg.Health.History.Path)
	cfg.Directory = s.Resolve(cfg.Directory)
	return cfg, errors.Join(errs...)
}

// unjoin returns the errors an errors.Join holds, or err.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// discovered is a discovered target in the shape of a config target, with
// the section's http_config (nil for none).
func discovered(t discovery.Target, hc *config.HTTPClientConfig) Target {
	return Target{ID: t.ID, Endpoint: t.Endpoint, MetricsURL: t.MetricsURL, Kind: t.Kind, Model: t.Model, Labels: t.Labels, HTTPConfig: hc}
}

// spec checks a target and turns it into a Spec. Its errors are
// agent.KeyErrorf errors, naming the key.
func (t Target) spec(src catalog.Source) (catalog.Spec, error) {
	if err := catalog.ValidID(t.ID); err != nil {
		return catalog.Spec{}, agent.KeyErrorf("id", "%v", err)
	}
	kind := probes.KindAuto
	if t.Kind != "" {
		k, err := probes.ParseKind(t.Kind)
		if err != nil {
			return catalog.Spec{}, agent.KeyErrorf("kind", "%v", err)
		}
		if k == probes.KindUnknown {
			return catalog.Spec{}, agent.KeyErrorf("kind", "%q cannot be configured; use auto", t.Kind)
		}
		kind = k
	}
	if t.Endpoint == "" {
		return catalog.Spec{}, agent.KeyErrorf("endpoint", "required")
	}
	u, err := url.Parse(t.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return catalog.Spec{}, agent.KeyErrorf("endpoint", "%q is not an http(s) URL", t.Endpoint)
	}
	if u.User != nil {
		// They would show wherever the endpoint does: logs, the API.
		return catalog.Spec{}, agent.KeyErrorf("endpoint", "credentials in the URL; put them in http_config (basic_auth, authorization)")
	}
	metricsURL, err := checkMetricsURL(t.MetricsURL)
	if err != nil {
		return catalog.Spec{}, agent.KeyErrorf("metrics_url", "%v", err)
	}
	if t.PID < 0 {
		return catalog.Spec{}, agent.KeyErrorf("pid", "must not be negative, got %d", t.PID)
	}
	for _, d := range t.DependsOn {
		if err := catalog.ValidID(d); err != nil {
			return catalog.Spec{}, agent.KeyErrorf("depends_on", "%v", err)
		}
	}
	if t.HTTPConfig != nil {
		if err := t.HTTPConfig.Validate(); err != nil {
			return catalog.Spec{}, agent.KeyErrorf("http_config", "%v", err)
		}
	}
	return catalog.Spec{
		ID: t.ID, Source: src, Kind: kind, Endpoint: t.Endpoint, MetricsURL: metricsURL, PID: t.PID, Model: t.Model,
		Labels: t.Labels, Dependencies: t.DependsOn, HTTPConfig: t.HTTPConfig,
	}, nil
}

// checkMetricsURL checks a target's metrics_url and returns it with the
// path /metrics when it has none; "" stays "".
func checkMetricsURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	switch {
	case err == nil && u.User != nil:
		// They would show wherever the target does: logs, the API.
		return "", errors.New("credentials in the URL; put them in http_config (basic_auth, authorization)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("%q is not an http(s) URL", s)
	case u.Fragment != "":
		return "", fmt.Errorf("%q has a fragment", s)
	}
	if u.Path == "" {
		u.Path = "/metrics"
	}
	return u.String(), nil
}
