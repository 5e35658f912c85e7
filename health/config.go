package health

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/probes"
)

// Config is the health part of the extmanager section (key "health"):
//
//	health:
//	  enabled: true
//	  interval: 10s             # between checks of one plugin
//	  unhealthy_interval: 5s    # between checks while unhealthy or stuck (0: interval)
//	  timeout: 5s               # bound on one check, all its probes
//	  start_spread: 1.0         # first checks spread over this fraction of the interval
//	  jitter: 0.05              # each check moves by up to ±jitter × interval from its phase
//	  slack: 100ms              # checks due this soon after a due one start with it (≤ interval/10); > 0 also aligns phases
//	  concurrency: 32           # checks running at once, over all plugins
//	  failure_threshold: 3      # consecutive failed checks of one probe → unhealthy
//	  success_threshold: 2      # consecutive good checks to leave unhealthy
//	  retries: 2                # re-sends of a probe that failed with reset or http_5xx
//	  readiness: true
//	  resources: true
//	  synthetic: false          # one tiny inference per check; opt-in
//	  max_tokens: 2             # its token budget (1 to 32)
//	  daily_token_budget: 0     # tokens each plugin's synthetic inferences may spend per UTC day (0: no limit)
//	  idle_aware: true          # skip it while the server's counters show requests completing
//	  latency_slo: 2s           # check latency above it, failure_threshold times → degraded
//	  ttft_slo: 1s              # time to first token, likewise
//	  error_rate: {window: 50, min_samples: 10, degrade_above: 0.1, recover_below: 0.025}
//	  plugins:                  # per-plugin overrides
//	    local-ollama: {synthetic: true, interval: 30s, timeout: 10s, max_tokens: 16, daily_token_budget: 50000}
//	  rollup: {policy: all, quorum: 0.5, readiness: false}
//	  metrics:
//	    classic_buckets: []     # latency histogram buckets (seconds) besides the native histogram; none by default
//	  history:
//	    path: ""                # SQLite file, relative to core.yaml; "" keeps the ring only
//	    ring: 256               # checks and transitions kept in memory per plugin
//	    max_age: 192h
//	    max_rows: 1000000
//	    max_bytes: 268435456
//	    prune_interval: 1m
type Config struct {
	Enabled           bool                    `yaml:"enabled"`
	Interval          agent.Duration          `yaml:"interval"`
	UnhealthyInterval agent.Duration          `yaml:"unhealthy_interval"`
	Timeout           agent.Duration          `yaml:"timeout"`
	StartSpread       float64                 `yaml:"start_spread"`
	Jitter            float64                 `yaml:"jitter"`
	Slack             agent.Duration          `yaml:"slack"`
	Concurrency       int                     `yaml:"concurrency"`
	FailureThreshold  int                     `yaml:"failure_threshold"`
	SuccessThreshold  int                     `yaml:"success_threshold"`
	Retries           int                     `yaml:"retries"`
	Readiness         bool                    `yaml:"readiness"`
	Resources         bool                    `yaml:"resources"`
	Synthetic         bool                    `yaml:"synthetic"`
	MaxTokens         int                     `yaml:"max_tokens"`
	DailyTokenBudget  int64                   `yaml:"daily_token_budget"`
	IdleAware         bool                    `yaml:"idle_aware"`
	LatencySLO        agent.Duration          `yaml:"latency_slo"`
	TTFTSLO           agent.Duration          `yaml:"ttft_slo"`
	ErrorRate         ErrorRateConfig         `yaml:"error_rate"`
	Signals           bool                    `yaml:"signals"`
	OverloadedQueue   int                     `yaml:"overloaded_queue"`
	StuckAfter        agent.Duration          `yaml:"stuck_after"`
	Plugins           map[string]PluginConfig `yaml:"plugins"`
	Rollup            RollupConfig            `yaml:"rollup"`
	Metrics           MetricsConfig           `yaml:"metrics"`
	History           HistoryConfig           `yaml:"history"`
}

// MetricsConfig shapes the per-plugin latency histograms
// (vitals_ai_probe_duration_seconds, vitals_ai_time_to_first_token_seconds).
// They are native histograms, which a scraper that negotiates them (the
// protobuf exposition) gets at full resolution in one series each;
// ClassicBuckets adds classic buckets, one series each per plugin and
// probe in every exposition, for scrapers that do not. It applies when the
// engine starts.
//
// ProbeDurations are the probes with a duration histogram. By default
// not readiness: its request goes to the same server as liveness's, in the
// same check, so its time says little that liveness's does not, and its
// histogram was a fifth of a plugin's series. Its results and errors are
// counted either way.
type MetricsConfig struct {
	ClassicBuckets []float64 `yaml:"classic_buckets"`
	ProbeDurations []string  `yaml:"probe_durations"`
}

// timedProbes are the probes that may have a duration histogram (not the
// resource probe, whose time is the agent's own procfs reads).
var timedProbes = []string{probes.Liveness, probes.Readiness, probes.Synthetic, ProbeHeartbeat, ProbeBusHealth, ProbeSelf}

// maxClassicBuckets bounds metrics.classic_buckets.
const maxClassicBuckets = 30

// ErrorRateConfig is the error-rate window: the last Window probe requests
// of a plugin. At DegradeAbove or more failed (with at least MinSamples
// requests seen) the plugin is degraded; it recovers below RecoverBelow.
type ErrorRateConfig struct {
	Window       int     `yaml:"window"`
	MinSamples   int     `yaml:"min_samples"`
	DegradeAbove float64 `yaml:"degrade_above"`
	RecoverBelow float64 `yaml:"recover_below"`
}

// PluginConfig overrides settings for one plugin; zero fields keep the
// section's.
type PluginConfig struct {
	Synthetic        *bool          `yaml:"synthetic"`
	Interval         agent.Duration `yaml:"interval"`
	Timeout          agent.Duration `yaml:"timeout"`
	Model            string         `yaml:"model"`
	MaxTokens        int            `yaml:"max_tokens"`
	DailyTokenBudget int64          `yaml:"daily_token_budget"`
}

// Roll-up policies.
const (
	PolicyAll           = "all"
	PolicyAny           = "any"
	PolicyQuorum        = "quorum"
	PolicyPerCapability = "per_capability"
)

// RollupConfig says how plugin states add up to the overall AI health.
// Readiness makes the ExtManager's own health check fail while the
// roll-up is not ok.
type RollupConfig struct {
	Policy    string  `yaml:"policy"`
	Quorum    float64 `yaml:"quorum"`
	Readiness bool    `yaml:"readiness"`
}

// HistoryConfig is where and how long check history is kept.
type HistoryConfig struct {
	Path          string         `yaml:"path"`
	Ring          int            `yaml:"ring"`
	MaxAge        agent.Duration `yaml:"max_age"`
	MaxRows       int64          `yaml:"max_rows"`
	MaxBytes      int64          `yaml:"max_bytes"`
	PruneInterval agent.Duration `yaml:"prune_interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		Interval:          agent.Duration(10 * time.Second),
		UnhealthyInterval: agent.Duration(5 * time.Second),
		Timeout:           agent.Duration(5 * time.Second),
		StartSpread:       1,
		Jitter:            0.05,
		Slack:             agent.Duration(100 * time.Millisecond),
		Concurrency:       32,
		FailureThreshold:  3,
		SuccessThreshold:  2,
		Retries:           2,
		Readiness:         true,
		Resources:         true,
		MaxTokens:         2,
		IdleAware:         true,
		LatencySLO:        agent.Duration(2 * time.Second),
		TTFTSLO:           agent.Duration(time.Second),
		ErrorRate:         ErrorRateConfig{Window: 50, MinSamples: 10, DegradeAbove: 0.1, RecoverBelow: 0.025},
		Signals:           true,
		OverloadedQueue:   4,
		StuckAfter:        agent.Duration(30 * time.Second),
		Rollup:            RollupConfig{Policy: PolicyAll, Quorum: 0.5},
		Metrics:           MetricsConfig{ProbeDurations: []string{probes.Liveness, probes.Synthetic, ProbeHeartbeat, ProbeBusHealth, ProbeSelf}},
		History: HistoryConfig{
			Ring: 256, MaxAge: agent.Duration(8 * 24 * time.Hour), MaxRows: 1_000_000, MaxBytes: 256 << 20,
			PruneInterval: agent.Duration(time.Minute),
		},
	}
}

func bad(key, format string, args ...any) error { return agent.KeyErrorf(key, format, args...) }

// Validate checks c; its errors are agent.KeyErrorf errors naming the key
// below the health section.
func (c Config) Validate() error {
	switch {
	case c.Interval.D() < time.Millisecond:
		return bad("interval", "must be at least 1ms, got %s", c.Interval)
	case c.UnhealthyInterval.D() < 0 || (c.UnhealthyInterval.D() > 0 && c.UnhealthyInterval.D() < time.Millisecond):
		return bad("unhealthy_interval", "must be 0 or at least 1ms, got %s", c.UnhealthyInterval)
	case c.Timeout.D() <= 0:
		return bad("timeout", "must be positive, got %s", c.Timeout)
	case c.StartSpread < 0 || c.StartSpread > 1:
		return bad("start_spread", "must be 0 to 1, got %g", c.StartSpread)
	case c.Jitter < 0 || c.Jitter > 0.5:
		return bad("jitter", "must be 0 to 0.5, got %g", c.Jitter)
	case c.Slack.D() < 0 || c.Slack.D() > time.Second:
		return bad("slack", "must be 0 to 1s, got %s", c.Slack)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return bad("concurrency", "must be 1 to 4096, got %d", c.Concurrency)
	case c.FailureThreshold < 1 || c.FailureThreshold > 100:
		return bad("failure_threshold", "must be 1 to 100, got %d", c.FailureThreshold)
	case c.SuccessThreshold < 1 || c.SuccessThreshold > 100:
		return bad("success_threshold", "must be 1 to 100, got %d", c.SuccessThreshold)
	case c.Retries < 0 || c.Retries > 3:
		return bad("retries", "must be 0 to 3, got %d", c.Retries)
	case c.MaxTokens < 1 || c.MaxTokens > probes.MaxSyntheticTokens:
		return bad("max_tokens", "must be 1 to %d, got %d", probes.MaxSyntheticTokens, c.MaxTokens)
	case c.DailyTokenBudget < 0:
		return bad("daily_token_budget", "must be 0 (no limit) or more, got %d", c.DailyTokenBudget)
	case c.LatencySLO.D() <= 0:
		return bad("latency_slo", "must be positive, got %s", c.LatencySLO)
	case c.TTFTSLO.D() <= 0:
		return bad("ttft_slo", "must be positive, got %s", c.TTFTSLO)
	case c.OverloadedQueue < 0 || c.OverloadedQueue > 1_000_000:
		return bad("overloaded_queue", "must be 0 (off) to 1000000, got %d", c.OverloadedQueue)
	case c.StuckAfter.D() < 0 || (c.StuckAfter.D() > 0 && c.StuckAfter.D() < time.Millisecond):
		return bad("stuck_after", "must be 0 (off) or at least 1ms, got %s", c.StuckAfter)
	}
	er := c.ErrorRate
	switch {
	case er.Window < 1 || er.Window > 10000:
		return bad("error_rate.window", "must be 1 to 10000, got %d", er.Window)
	case er.MinSamples < 1 || er.MinSamples > er.Window:
		return bad("error_rate.min_samples", "must be 1 to window (%d), got %d", er.Window, er.MinSamples)
	case er.DegradeAbove <= 0 || er.DegradeAbove > 1:
		return bad("error_rate.degrade_above", "must be in (0, 1], got %g", er.DegradeAbove)
	case er.RecoverBelow < 0 || er.RecoverBelow > er.DegradeAbove:
		return bad("error_rate.recover_below", "must be 0 to degrade_above (%g), got %g", er.DegradeAbove, er.RecoverBelow)
	}
	for id, p := range c.Plugins {
		switch {
		case p.Interval.D() != 0 && p.Interval.D() < time.Millisecond:
			return bad("plugins."+id+".interval", "must be at least 1ms, got %s", p.Interval)
		case p.Timeout.D() < 0:
			return bad("plugins."+id+".timeout", "must not be negative, got %s", p.Timeout)
		case p.MaxTokens < 0 || p.MaxTokens > probes.MaxSyntheticTokens:
			return bad("plugins."+id+".max_tokens", "must be 0 (the section's) to %d, got %d", probes.MaxSyntheticTokens, p.MaxTokens)
		case p.DailyTokenBudget < 0:
			return bad("plugins."+id+".daily_token_budget", "must be 0 (the section's) or more, got %d", p.DailyTokenBudget)
		}
	}
	r := c.Rollup
	if !slices.Contains([]string{PolicyAll, PolicyAny, PolicyQuorum, PolicyPerCapability}, r.Policy) {
		return bad("rollup.policy", "must be all, any, quorum or per_capability, got %q", r.Policy)
	}
	if r.Quorum <= 0 || r.Quorum > 1 {
		return bad("rollup.quorum", "must be in (0, 1], got %g", r.Quorum)
	}
	if b := c.Metrics.ClassicBuckets; len(b) > maxClassicBuckets {
		return bad("metrics.classic_buckets", "must have at most %d buckets, got %d", maxClassicBuckets, len(b))
	}
	for i, v := range c.Metrics.ClassicBuckets {
		if !(v > 0) || math.IsInf(v, 1) || (i > 0 && !(v > c.Metrics.ClassicBuckets[i-1])) {
			return bad(fmt.Sprintf("metrics.classic_buckets[%d]", i), "must be positive, finite and above the bucket before it, got %g", v)
		}
	}
	for i, p := range c.Metrics.ProbeDurations {
		if !slices.Contains(timedProbes, p) {
			return bad(fmt.Sprintf("metrics.probe_durations[%d]", i), "must be one of %s, got %q", strings.Join(timedProbes, ", "), p)
		}
	}
	h := c.History
	switch {
	case h.Ring < 1 || h.Ring > 100000:
		return bad("history.ring", "must be 1 to 100000, got %d", h.Ring)
	case h.MaxAge.D() < 0:
		return bad("history.max_age", "must not be negative, got %s", h.MaxAge)
	case h.MaxRows < 0:
		return bad("history.max_rows", "must not be negative, got %d", h.MaxRows)
	case h.MaxBytes < 0:
		return bad("history.max_bytes", "must not be negative, got %d", h.MaxBytes)
	case h.PruneInterval.D() < time.Second:
		return bad("history.prune_interval", "must be at least 1s, got %s", h.PruneInterval)
	}
	return nil
}

// interval returns the check interval of plugin id.
func (c Config) interval(id string) time.Duration {
	if p, ok := c.Plugins[id]; ok && p.Interval > 0 {
		return p.Interval.D()
	}
	return c.Interval.D()
}

func (c Config) unhealthyInterval(id string) time.Duration {
	if c.UnhealthyInterval > 0 {
		return min(c.UnhealthyInterval.D(), c.interval(id))
	}
	return c.interval(id)
}

func (c Config) timeout(id string) time.Duration {
	if p, ok := c.Plugins[id]; ok && p.Timeout > 0 {
		return p.Timeout.D()
	}
	return c.Timeout.D()
}

// maxTokens is the token budget of plugin id's synthetic inference, and
// the key that sets it.
func (c Config) maxTokens(id string) (int, string) {
	if p, ok := c.Plugins[id]; ok && p.MaxTokens > 0 {
		return p.MaxTokens, "plugins." + id + ".max_tokens"
	}
	return c.MaxTokens, "max_tokens"
}

// dailyTokenBudget is the tokens plugin id's synthetic inferences may
// spend per UTC day, 0 for no limit, and the key that sets it.
func (c Config) dailyTokenBudget(id string) (int64, string) {
	if p, ok := c.Plugins[id]; ok && p.DailyTokenBudget > 0 {
		return p.DailyTokenBudget, "plugins." + id + ".daily_token_budget"
	}
	return c.DailyTokenBudget, "daily_token_budget"
}

func (c Config) synthetic(id string) bool {
	if p, ok := c.Plugins[id]; ok && p.Synthetic != nil {
		return *p.Synthetic
	}
	return c.Synthetic
}
