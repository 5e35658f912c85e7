package extmanager

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/config"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// ProbeConfig is the probe section: GET /probe, checks that Prometheus
// drives as it drives blackbox_exporter.
//
//	probe:
//	  enabled: true            # serve GET /probe (default off)
//	  concurrency: 32          # probes at once; more wait for a place, up to their timeout
//	  allowed_targets: []      # hosts a target may name: loopback, IPs, CIDR prefixes, host names; empty: any
//	  modules:
//	    default:   {probes: [liveness, readiness], timeout: 10s}
//	    inference: {probes: [liveness, readiness, synthetic], timeout: 15s, max_tokens: 2}
//	    vllm_key:  {probes: [liveness, readiness], timeout: 10s, http_config: {authorization: {credentials_file: /etc/vitals/vllm-key}}}
type ProbeConfig struct {
	Enabled        bool                   `yaml:"enabled"`
	Concurrency    int                    `yaml:"concurrency"`
	AllowedTargets []string               `yaml:"allowed_targets"`
	Modules        map[string]ProbeModule `yaml:"modules"`
}

// ProbeModule is a named probe set and its timeout.
type ProbeModule struct {
	// Probes are the checks run after detection, in this order, each only
	// when the one before passed: liveness, readiness, synthetic.
	Probes  []string       `yaml:"probes"`
	Timeout agent.Duration `yaml:"timeout"`
	// Model is the model the synthetic inference uses; empty picks one of
	// the server's.
	Model     string `yaml:"model"`
	MaxTokens int    `yaml:"max_tokens"`
	// HTTPConfig is Prometheus' http_config of the module's requests
	// (credentials, TLS, proxy), as a target's; none: the default client.
	HTTPConfig *config.HTTPClientConfig `yaml:"http_config"`
}

// The /probe bounds.
const (
	maxProbeTimeout     = 2 * time.Minute
	maxProbeConcurrency = 1024
	// scrapeTimeoutOffset is left of a scrape's timeout for the answer to
	// reach Prometheus, as blackbox_exporter's timeout_offset.
	scrapeTimeoutOffset = 500 * time.Millisecond
)

// probeSteps are the checks a module may name, in the order they run.
var probeSteps = []string{probes.Liveness, probes.Readiness, probes.Synthetic}

func defaultProbeConfig() ProbeConfig {
	return ProbeConfig{
		Concurrency: 32,
		Modules: map[string]ProbeModule{
			"default":   {Probes: []string{probes.Liveness, probes.Readiness}, Timeout: agent.Duration(10 * time.Second)},
			"inference": {Probes: []string{probes.Liveness, probes.Readiness, probes.Synthetic}, Timeout: agent.Duration(15 * time.Second), MaxTokens: 2},
		},
	}
}

// validate checks the probe section; keys are below "probe".
func (c ProbeConfig) validate(s agent.Section) []error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > maxProbeConcurrency {
		errs = append(errs, s.Errorf("probe.concurrency", "must be 1 to %d, got %d", maxProbeConcurrency, c.Concurrency))
	}
	for i, a := range c.AllowedTargets {
		err := checkAllowed(a)
		if a == AllowPeer {
			err = fmt.Errorf("%q has no meaning for /probe", a)
		}
		if err != nil {
			errs = append(errs, s.Errorf(fmt.Sprintf("probe.allowed_targets[%d]", i), "%v", err))
		}
	}
	if len(c.Modules) == 0 {
		errs = append(errs, s.Errorf("probe.modules", "at least one module"))
	}
	for name, m := range c.Modules {
		key := "probe.modules." + name
		if !agent.ValidName(name) {
			errs = append(errs, s.Errorf(key, "%q: want a name like default or inference", name))
		}
		if len(m.Probes) == 0 || m.Probes[0] != probes.Liveness {
			errs = append(errs, s.Errorf(key+".probes", "must start with liveness"))
		}
		last := -1
		for _, p := range m.Probes {
			i := slices.Index(probeSteps, p)
			if i < 0 {
				errs = append(errs, s.Errorf(key+".probes", "%q: want %s", p, strings.Join(probeSteps, ", ")))
			} else if i <= last {
				errs = append(errs, s.Errorf(key+".probes", "%q: each once, in the order %s", p, strings.Join(probeSteps, ", ")))
			}
			last = max(last, i)
		}
		if m.Timeout.D() <= 0 || m.Timeout.D() > maxProbeTimeout {
			errs = append(errs, s.Errorf(key+".timeout", "must be above 0 and at most %s, got %s", maxProbeTimeout, m.Timeout))
		}
		if m.MaxTokens < 0 || m.MaxTokens > 4 {
			errs = append(errs, s.Errorf(key+".max_tokens", "must be 0 (the default, 2) to 4, got %d", m.MaxTokens))
		}
		if err := checkHTTPConfig(m.HTTPConfig, fileDir(s)); err != nil {
			errs = append(errs, s.Errorf(key+".http_config", "%v", err))
		}
	}
	return errs
}

// httpConfigs are the modules' http_configs, whose clients are kept.
func (c ProbeConfig) httpConfigs() []*config.HTTPClientConfig {
	var out []*config.HTTPClientConfig
	for _, m := range c.Modules {
		if m.HTTPConfig != nil {
			out = append(out, m.HTTPConfig)
		}
	}
	return out
}

// prober serves GET /probe. Its semaphore bounds the probes in flight; a
// reload with a new concurrency replaces it.
type prober struct {
	e        *ExtManager
	sem      atomic.Pointer[chan struct{}]
	requests *prometheus.CounterVec
}

// Probe results, the values of vitals_probe_requests_total's result label.
const (
	probeSuccess = "success"
	probeFailure = "failure"
	probeInvalid = "invalid"
	probeBusy    = "busy"
	probeOff     = "disabled"
)

func newProber(e *ExtManager, concurrency int) *prober {
	p := &prober{e: e, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitals_probe_requests_total",
		Help: "GET /probe requests, by module and result (success, failure, invalid: a bad target, module or kind, busy: no place within the timeout, disabled).",
	}, []string{"module", "result"})}
	for _, r := range []string{probeInvalid, probeBusy, probeOff} {
		p.requests.WithLabelValues("", r)
	}
	p.resize(concurrency)
	return p
}

func (p *prober) resize(n int) {
	if cur := p.sem.Load(); cur != nil && cap(*cur) == n {
		return
	}
	ch := make(chan struct{}, max(n, 1))
	p.sem.Store(&ch)
}

// ServeHTTP answers GET /probe?target=URL&module=NAME&kind=KIND with the
// metrics of one detection and one check of the target, in a registry of
// the request's own, as blackbox_exporter answers /probe: a failed check
// is a 200 whose vitals_probe_success is 0; a bad request is a 400.
func (p *prober) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := p.e.config().Probe
	if !cfg.Enabled {
		p.requests.WithLabelValues("", probeOff).Inc()
		agent.WriteError(w, http.StatusNotFound, "the probe endpoint is off: set extmanager.probe.enabled")
		return
	}
	q, err := agent.ParseQuery(r, time.Now(), "target", "module", "kind")
	if err != nil {
		p.requests.WithLabelValues("", probeInvalid).Inc()
		agent.WriteQueryError(w, err)
		return
	}
	name := q.Get("module")
	if name == "" {
		name = "default"
	}
	mod, ok := cfg.Modules[name]
	if !ok {
		p.invalid(w, "", fmt.Sprintf("module %q is not configured; known: %s", truncate(name, 64), strings.Join(slices.Sorted(maps.Keys(cfg.Modules)), ", ")))
		return
	}
	kind := probes.KindAuto
	if k := q.Get("kind"); k != "" {
		if kind, err = probes.ParseKind(k); err != nil || kind == probes.KindUnknown {
			p.invalid(w, name, fmt.Sprintf("kind %q: want auto or one of %s", truncate(k, 64), strings.Join(names(probes.Kinds()), ", ")))
			return
		}
	}
	base, err := probeTarget(q.Get("target"), cfg.AllowedTargets)
	if err != nil {
		p.invalid(w, name, err.Error())
		return
	}

	timeout := mod.Timeout.D()
	if v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && secs <= maxProbeTimeout.Seconds() {
			st := time.Duration(secs * float64(time.Second))
			if st > 2*scrapeTimeoutOffset {
				st -= scrapeTimeoutOffset
			}
			timeout = min(timeout, st)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	sem := *p.sem.Load()
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	case <-ctx.Done():
		p.requests.WithLabelValues("", probeBusy).Inc()
		w.Header().Set("Retry-After", "1")
		agent.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("%d probes are running, the most probe.concurrency allows; none ended within %s", cap(sem), timeout))
		return
	}
	reg := prometheus.NewRegistry()
	ok = p.run(ctx, reg, base, kind, mod)
	result := probeFailure
	if ok {
		result = probeSuccess
	}
	p.requests.WithLabelValues(name, result).Inc()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (p *prober) invalid(w http.ResponseWriter, module, msg string) {
	p.requests.WithLabelValues(module, probeInvalid).Inc()
	agent.WriteError(w, http.StatusBadRequest, msg)
}

// probeTarget checks a /probe target and returns it as a base URL: an
// http or https URL (a bare host:port is http) with a host, no user info,
// no query or fragment (the probes append their paths to it), whose host
// allowed permits (any when allowed is empty).
// Its length is bounded before: agent.ParseQuery refuses a value longer
// than agent.MaxQueryValueBytes.
func probeTarget(target string, allowed []string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("target is required: /probe?target=http://host:port")
	}
	raw := target
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("target %q: %v", truncate(target, 128), err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("target %q: want an http or https URL", truncate(target, 128))
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("target %q: no host", truncate(target, 128))
	}
	if err := endpointAllowed(allowedOrAny(allowed, u), raw, ""); err != nil {
		return "", fmt.Errorf("target: %s", strings.Replace(err.Error(), "bus.allowed_endpoints", "probe.allowed_targets", 1))
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// allowedOrAny is allowed, or, when it is empty, an entry that admits u's
// host; endpointAllowed still checks u's user info, query and fragment.
func allowedOrAny(allowed []string, u *url.URL) []string {
	if len(allowed) > 0 {
		return allowed
	}
	return []string{strings.ToLower(u.Hostname())}
}

// probeMetrics are the series of one /probe answer.
type probeMetrics struct {
	success, duration, ttft, tps, models *prometheus.GaugeVec
	stepSuccess, stepDuration, failed    *prometheus.GaugeVec
	info, capability                     *prometheus.GaugeVec
}

func newProbeMetrics(reg *prometheus.Registry) *probeMetrics {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	return &probeMetrics{
		success:      g("vitals_probe_success", "1 when detection and every check of the module passed, else 0."),
		duration:     g("vitals_probe_duration_seconds", "How long the probe took, detection included."),
		stepSuccess:  g("vitals_probe_step_success", "1 when the step (detect, liveness, readiness, synthetic) passed, 0 when it failed; a step that did not run has no series.", "step"),
		stepDuration: g("vitals_probe_step_duration_seconds", "How long each step that ran took.", "step"),
		failed:       g("vitals_probe_error", "The step that failed and its error class; 1, and no series when the probe passed.", "step", "class"),
		ttft:         g("vitals_probe_time_to_first_token_seconds", "Time to the first token of the synthetic inference, when it streamed one."),
		tps:          g("vitals_probe_output_tokens_per_second", "Output tokens per second of the synthetic inference, when it reported its tokens."),
		info:         g("vitals_probe_info", "What detection found: the kind, server and version; always 1.", "kind", "server", "version"),
		capability:   g("vitals_probe_capability", "The capabilities detection found, one series of value 1 each.", "capability"),
		models:       g("vitals_probe_models", "Models the server offers."),
	}
}

// run detects the target and runs the module's checks, setting the
// metrics of reg; it reports whether every step passed.
func (p *prober) run(ctx context.Context, reg *prometheus.Registry, base string, kind probes.Kind, mod ProbeModule) bool {
	m := newProbeMetrics(reg)
	start := time.Now()
	ok := p.steps(ctx, m, base, kind, mod)
	m.duration.WithLabelValues().Set(time.Since(start).Seconds())
	m.success.WithLabelValues().Set(b2f(ok))
	return ok
}

func (p *prober) steps(ctx context.Context, m *probeMetrics, base string, kind probes.Kind, mod ProbeModule) bool {
	fail := func(step string, class probes.ErrorClass) bool {
		m.stepSuccess.WithLabelValues(step).Set(0)
		if class == "" {
			class = probes.ClassOther
		}
		m.failed.WithLabelValues(step, string(class)).Set(1)
		return false
	}
	reg := engines.Registry()
	client := p.e.clients.get(mod.HTTPConfig)
	t0 := time.Now()
	d, err := reg.Detect(ctx, client, base, probes.DetectOptions{Kind: kind, Attempts: 1})
	m.stepDuration.WithLabelValues("detect").Set(time.Since(t0).Seconds())
	if err != nil {
		return fail("detect", probes.Classify(err))
	}
	if d.Kind == probes.KindUnknown {
		return fail("detect", probes.ClassBadResponse)
	}
	m.stepSuccess.WithLabelValues("detect").Set(1)
	m.info.WithLabelValues(string(d.Kind), d.Server, d.Version).Set(1)
	for _, c := range d.Capabilities {
		m.capability.WithLabelValues(string(c)).Set(1)
	}
	m.models.WithLabelValues().Set(float64(len(d.Models)))

	set := reg.Probes(d.Kind)
	pt := probes.Target{ID: "probe", BaseURL: base, Kind: d.Kind, Model: mod.Model, Models: d.Models, Capabilities: d.Capabilities}
	pc := probes.Config{MaxTokens: mod.MaxTokens}
	if pc.MaxTokens == 0 {
		pc.MaxTokens = 2
	}
	for _, step := range mod.Probes {
		var pr probes.Probe
		switch step {
		case probes.Liveness:
			pr = set.Liveness
		case probes.Readiness:
			pr = set.Readiness
		case probes.Synthetic:
			if set.SyntheticOp(pt) != "" {
				pr = set.Synthetic
			}
		}
		if pr == nil {
			continue // the kind has no such check (a classifier's inference, say)
		}
		res, err := probes.Run(ctx, pr, client, pt, pc, time.Now)
		m.stepDuration.WithLabelValues(step).Set(res.Duration.Seconds())
		if err != nil {
			return fail(step, probes.Classify(err))
		}
		m.stepSuccess.WithLabelValues(step).Set(1)
		if step == probes.Synthetic {
			if res.TimeToFirstToken > 0 {
				m.ttft.WithLabelValues().Set(res.TimeToFirstToken.Seconds())
			}
			if tps := res.OutputTokensPerSecond(); tps > 0 {
				m.tps.WithLabelValues().Set(tps)
			}
		}
	}
	return true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
