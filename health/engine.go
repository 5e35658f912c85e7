package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// Probe names beyond those of a kind's probe set (probes.Liveness and the
// others).
const (
	// ProbeHeartbeat checks that a bus plugin's heartbeats are fresh.
	ProbeHeartbeat = "heartbeat"
	// ProbeBusHealth asks a bus plugin over health.request.<plugin>.
	ProbeBusHealth = "bus_health"
	// ProbeSelf asks an in-process plugin's own health check.
	ProbeSelf = "self"
)

// Mode says how a target is checked.
type Mode string

// Modes.
const (
	// ModeHTTP probes a server with the probes of its kind.
	ModeHTTP Mode = "http"
	// ModeBus and ModeSelf run the probes the ExtManager supplies in
	// Options.Probes.
	ModeBus  Mode = "bus"
	ModeSelf Mode = "self"
)

// Target is one AI plugin as the engine sees it.
type Target struct {
	ID           string
	Mode         Mode
	Kind         probes.Kind
	Endpoint     string
	Model        string
	Models       []probes.Model
	Capabilities []probes.Capability
	PID          int
	Dependencies []string
	// Client makes this target's requests (its credentials, TLS, proxy):
	// nil for Options.Client. The engine adds the trace context.
	Client *http.Client `json:"-"`
}

// Probe is a probe for targets of a mode other than ModeHTTP.
type Probe struct {
	Name string
	// Informational probes are recorded but do not change the state.
	Informational bool
	Run           func(ctx context.Context, t Target) (probes.Result, error)
}

// Options configure an Engine.
type Options struct {
	Config         Config
	Client         *http.Client
	Logger         *slog.Logger
	Metrics        *Metrics
	TracerProvider trace.TracerProvider
	// MeterProvider receives the checks as OpenTelemetry metrics (the
	// GenAI client metrics and vitals.*); nil records none.
	MeterProvider metric.MeterProvider
	// GenAILatest selects the latest GenAI semantic conventions
	// (GenAILatestVersion) over the default (GenAIDefaultVersion), as
	// OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental asks.
	GenAILatest bool
	Clock       Clock
	// History records checks and transitions; nil means a ring of its own.
	History *History
	// Probes are the probes of targets of ModeBus and ModeSelf.
	Probes map[Mode][]Probe
	// OnVerdict is called after every check.
	OnVerdict func(id string, s Status)
	// OnTransition is called after every change of state, after the
	// engine logged, counted and recorded it.
	OnTransition func(ctx context.Context, t Transition)
	// Registry maps a server's kind to its probe set; nil means the
	// families of probes/engines.
	Registry *probes.Registry
	// ProcFS is where process statistics are read; nil means /proc.
	ProcFS probes.ProcFS
	// FindPID looks up the process listening on a loopback endpoint's port
	// when a target has no PID; nil turns the lookup off.
	FindPID func(port int) (int, error)
	// Lag, when set, sees every scheduler lag that the
	// vitals_scheduler_lag_seconds histogram sees.
	Lag func(time.Duration)
}

// Status is the engine's view of one plugin.
type Status struct {
	ID        string            `json:"id"`
	State     State             `json:"state"`
	Reason    string            `json:"reason,omitempty"`
	Since     time.Time         `json:"since"`
	Checked   time.Time         `json:"checked,omitempty"`
	Checks    int64             `json:"checks"`
	ErrorRate float64           `json:"error_rate"`
	Last      *CheckRecord      `json:"last,omitempty"`
	Class     probes.ErrorClass `json:"class,omitempty"`
	Target    Target            `json:"-"`
}

// Engine checks AI plugins on a schedule. Feed it targets with Upsert and
// Remove; Start runs it until Stop.
type Engine struct {
	o       Options
	metrics *Metrics
	otel    *otelMetrics
	hist    *History
	tracer  trace.Tracer
	tp      trace.TracerProvider // nil when requests carry no trace context
	sched   *Scheduler
	seq     atomic.Int64

	mu      sync.RWMutex
	cfg     Config
	plugins map[string]*plugin

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

type plugin struct {
	mu      sync.Mutex // held by the check of this plugin; guards machine and tokens
	machine *Machine
	tokens  tokenUse

	smu    sync.RWMutex // guards the fields below; never held long
	target Target
	status Status
	client *http.Client // the target's client, with trace context
	pidTry bool
	pid    int
}

// New returns an engine; nothing runs until Start.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Registry == nil {
		o.Registry = engines.Registry()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(o.Config.Metrics)
	}
	if o.History == nil {
		o.History, _ = OpenHistory(context.Background(), nil, o.Config.History, o.Logger)
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	} else {
		// Every probe request carries the check's trace context.
		o.Client = probes.WithTraceContext(o.Client, tp, nil)
	}
	e := &Engine{o: o, metrics: o.Metrics, hist: o.History, cfg: o.Config, plugins: map[string]*plugin{},
		tracer: tp.Tracer("github.com/vitals-dev/vitals/health"), tp: o.TracerProvider}
	e.otel = newOTelMetrics(o.MeterProvider, o.GenAILatest, e)
	e.sched = NewScheduler(SchedulerOptions{
		Clock: o.Clock, Concurrency: o.Config.Concurrency, StartSpread: o.Config.StartSpread, Jitter: o.Config.Jitter, Slack: o.Config.Slack.D(),
		Lag: func(d time.Duration) {
			e.metrics.lag.Observe(d.Seconds())
			if o.Lag != nil {
				o.Lag(d)
			}
		},
	}, e.check)
	return e
}

// Metrics returns the engine's collectors.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// History returns the engine's history.
func (e *Engine) History() *History { return e.hist }

// Config returns the engine's config.
func (e *Engine) Config() Config {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.cfg
}

// SetConfig applies a new config from each plugin's next check; the
// concurrency bound stays the one the engine was made with.
func (e *Engine) SetConfig(c Config) {
	e.sched.SetTiming(c.StartSpread, c.Jitter, c.Slack.D())
	e.mu.Lock()
	e.cfg = c
	ps := make([]*plugin, 0, len(e.plugins))
	for _, p := range e.plugins {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.mu.Lock()
		p.machine.SetThresholds(c.thresholds())
		p.mu.Unlock()
		s := p.snapshot()
		id, st := s.ID, s.State
		e.sched.Set(id, e.intervalFor(c, id, st))
	}
}

func (e *Engine) intervalFor(c Config, id string, s State) time.Duration {
	if s.Failing() {
		return c.unhealthyInterval(id)
	}
	return c.interval(id)
}

// Start runs the scheduler and the history writer until Stop.
func (e *Engine) Start() {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if e.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	e.hist.Start(ctx)
	go func() {
		defer close(e.done)
		e.sched.Run(ctx)
	}()
}

// Stop ends the checks (those running see their context end), waits for
// them and for the history writer to store what is queued, or for ctx.
// The engine's OpenTelemetry gauges stop reporting.
// It is safe without Start and safe twice.
func (e *Engine) Stop(ctx context.Context) error {
	e.otel.close()
	e.runMu.Lock()
	cancel, done := e.cancel, e.done
	e.runMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	all := make(chan struct{})
	go func() {
		<-done
		e.hist.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("health engine stop: %w", ctx.Err())
	}
}

// Upsert adds a target or updates it; an update is checked at once.
func (e *Engine) Upsert(t Target) {
	e.mu.Lock()
	cfg := e.cfg
	p, ok := e.plugins[t.ID]
	if !ok {
		now := e.o.Clock.Now()
		p = &plugin{target: t, machine: NewMachine(cfg.thresholds()), client: e.clientFor(t),
			status: Status{ID: t.ID, State: StateUnknown, Since: now, Target: t}}
		e.plugins[t.ID] = p
		e.mu.Unlock()
		e.metrics.setState(t.ID, StateUnknown)
		e.sched.Set(t.ID, cfg.interval(t.ID))
		return
	}
	e.mu.Unlock()
	p.smu.Lock()
	changed := !equalTarget(p.target, t)
	if changed {
		if t.Client != p.target.Client {
			p.client = e.clientFor(t)
		}
		p.target = t
		p.status.Target = t
		p.pidTry, p.pid = false, 0
	}
	p.smu.Unlock()
	if changed {
		e.sched.Trigger(t.ID)
	}
}

func equalTarget(a, b Target) bool {
	return a.ID == b.ID && a.Mode == b.Mode && a.Kind == b.Kind && a.Endpoint == b.Endpoint && a.Model == b.Model &&
		a.PID == b.PID && a.Client == b.Client && slices.Equal(a.Dependencies, b.Dependencies) && slices.Equal(a.Capabilities, b.Capabilities) &&
		slices.EqualFunc(a.Models, b.Models, func(x, y probes.Model) bool {
			return x.ID == y.ID && slices.Equal(x.Capabilities, y.Capabilities)
		})
}

// httpClient returns the client of the plugin's requests.
func (p *plugin) httpClient() *http.Client {
	p.smu.RLock()
	defer p.smu.RUnlock()
	return p.client
}

// clientFor returns the client of t's requests: its own or the engine's,
// with trace context when the engine has a tracer provider.
func (e *Engine) clientFor(t Target) *http.Client {
	if t.Client == nil {
		return e.o.Client // already carries trace context
	}
	if e.tp == nil {
		return t.Client
	}
	return probes.WithTraceContext(t.Client, e.tp, nil)
}

// Remove forgets a target and deletes its series.
func (e *Engine) Remove(id string) {
	e.mu.Lock()
	_, ok := e.plugins[id]
	delete(e.plugins, id)
	e.mu.Unlock()
	if !ok {
		return
	}
	e.sched.Remove(id)
	e.metrics.forget(id)
	e.hist.Forget(id)
}

// Status returns one plugin's status.
func (e *Engine) Status(id string) (Status, bool) {
	e.mu.RLock()
	p, ok := e.plugins[id]
	e.mu.RUnlock()
	if !ok {
		return Status{}, false
	}
	return p.snapshot(), true
}

// Statuses returns every plugin's status, sorted by id.
func (e *Engine) Statuses() []Status {
	e.mu.RLock()
	ps := make([]*plugin, 0, len(e.plugins))
	for _, p := range e.plugins {
		ps = append(ps, p)
	}
	e.mu.RUnlock()
	out := make([]Status, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.snapshot())
	}
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

func (p *plugin) snapshot() Status {
	p.smu.RLock()
	defer p.smu.RUnlock()
	s := p.status
	if s.Last != nil {
		l := *s.Last
		s.Last = &l
	}
	return s
}

func (e *Engine) state(id string) (State, bool) {
	e.mu.RLock()
	p, ok := e.plugins[id]
	e.mu.RUnlock()
	if !ok {
		return "", false
	}
	return p.snapshot().State, true
}

// check is the scheduler's RunFunc.
func (e *Engine) check(ctx context.Context, id string, _ time.Time) {
	e.mu.RLock()
	p, ok := e.plugins[id]
	cfg := e.cfg
	e.mu.RUnlock()
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.smu.RLock()
	t := p.target
	p.smu.RUnlock()

	cctx, cancel := context.WithTimeout(ctx, cfg.timeout(id))
	defer cancel()
	cctx, span := e.tracer.Start(cctx, "ai.health.check", trace.WithAttributes(
		attribute.String("vitals.ai.plugin", id), attribute.String("vitals.ai.kind", string(t.Kind)),
		attribute.String("vitals.ai.check.mode", string(t.Mode))))
	defer span.End()

	started := e.o.Clock.Now()
	var obs Observation
	switch t.Mode {
	case ModeHTTP:
		obs.Probes, obs.Signals, obs.Passive = e.probeHTTP(cctx, cfg, p, t)
		_, known := e.o.Registry.Family(t.Kind)
		obs.Unidentified = !known
		obs.Model = t.Model
		if m := cfg.Plugins[t.ID].Model; m != "" {
			obs.Model = m
		}
	default:
		for _, pr := range e.o.Probes[t.Mode] {
			o := e.runProbe(cctx, cfg, pr.Name, pr.Informational, func(ctx context.Context) (probes.Result, error) {
				return pr.Run(ctx, t)
			})
			obs.Probes = append(obs.Probes, o)
			if !o.OK && !o.Informational {
				break
			}
		}
	}
	if ctx.Err() != nil {
		return // stopping: the results say nothing about the plugin
	}
	// The verdict is decided now, after the probes: the time every record
	// of this check carries. When it started and how long it took are kept
	// beside it.
	obs.Time = e.o.Clock.Now()
	for _, pr := range obs.Probes {
		if pr.Informational {
			continue
		}
		if pr.Probe == probes.Synthetic && pr.OK && pr.sent() {
			obs.Latency, obs.TTFT = pr.Duration, pr.Result.TimeToFirstToken
			break
		}
		obs.Latency = max(obs.Latency, pr.Duration)
	}
	for _, d := range t.Dependencies {
		if s, ok := e.state(d); ok && s.Failing() {
			obs.UnhealthyDeps = append(obs.UnhealthyDeps, d)
		}
	}
	v := p.machine.Observe(obs)
	e.metrics.observe(id, obs, span.SpanContext())
	e.metrics.signals.observe(id, obs.Signals, t.Models)
	e.otel.observe(cctx, id, obs)

	rec := CheckRecord{Seq: e.seq.Add(1), Plugin: id, Time: obs.Time, Started: started, Duration: obs.Time.Sub(started),
		State: v.State, OK: obs.OK(), Latency: obs.Latency, TTFT: obs.TTFT, Probes: obs.Probes}
	if f := obs.Failed(); f != nil {
		rec.Probe, rec.Class = f.Probe, f.Class
	}
	if tps, ok := e.tokensPerSecond(p, obs, started); ok {
		rec.TPS = tps
		e.metrics.tps.WithLabelValues(id).Set(tps)
	}
	span.SetAttributes(attribute.String("vitals.ai.state", string(v.State)), attribute.Bool("vitals.ai.check.ok", rec.OK))
	if !rec.OK {
		span.SetStatus(codes.Error, string(rec.Class))
		span.SetAttributes(attribute.String("error.type", string(rec.Class)))
	}

	var tr *Transition
	if v.Changed {
		tr = &Transition{Plugin: id, Time: obs.Time, Started: started, Duration: rec.Duration, From: v.From, To: v.State, Reason: v.Reason}
		span.AddEvent("health.transition", trace.WithAttributes(attribute.String("vitals.ai.from", string(v.From)),
			attribute.String("vitals.ai.to", string(v.State)), attribute.String("vitals.ai.reason", v.Reason)))
	}
	p.smu.Lock()
	st := &p.status
	st.State, st.Reason, st.Checked, st.Class = v.State, v.Reason, obs.Time, rec.Class
	st.Checks++
	st.ErrorRate = p.machine.ErrorRate()
	last := rec
	last.Probes = nil
	st.Last = &last
	if v.Changed {
		st.Since = obs.Time
	}
	snap := *st
	p.smu.Unlock()

	e.hist.Record(rec, tr)
	if e.o.OnVerdict != nil {
		e.o.OnVerdict(id, snap)
	}
	if tr != nil {
		// Inside the check's span (its log line carries the trace id, its
		// bus message the trace context), not under its deadline.
		e.transition(trace.ContextWithSpan(ctx, span), cfg, *tr)
	}
}

// transition logs, counts and announces a change of state, re-checks the
// plugin at once at the interval of its new state, and re-checks the
// plugins that depend on it when it entered or left unhealthy.
func (e *Engine) transition(ctx context.Context, cfg Config, t Transition) {
	e.metrics.transitions.WithLabelValues(t.Plugin, string(t.From), string(t.To)).Inc()
	e.otel.transition(ctx, t)
	e.metrics.setState(t.Plugin, t.To)
	level := slog.LevelInfo
	switch t.To {
	case StateDegraded, StateOverloaded, StateSleeping:
		level = slog.LevelWarn
	case StateStuck, StateUnhealthy:
		level = slog.LevelError
	}
	e.o.Logger.Log(ctx, level, "ai plugin health changed", "id", t.Plugin, "from", t.From, "to", t.To, "reason", t.Reason)
	e.sched.Set(t.Plugin, e.intervalFor(cfg, t.Plugin, t.To))
	e.sched.Trigger(t.Plugin)
	if t.To.Failing() != t.From.Failing() {
		e.mu.RLock()
		var deps []string
		for id, p := range e.plugins {
			p.smu.RLock()
			dep := slices.Contains(p.target.Dependencies, t.Plugin)
			p.smu.RUnlock()
			if dep {
				deps = append(deps, id)
			}
		}
		e.mu.RUnlock()
		for _, id := range deps {
			e.sched.Trigger(id)
		}
	}
	if e.o.OnTransition != nil {
		e.o.OnTransition(ctx, t)
	}
}

// retryable reports whether a probe that failed with class c is sent again
// within the same check: the server dropped the connection or failed with a
// 5xx, which one more request may not see. Timeouts are not retried (they
// used the check's time); refusals are definite.
func retryable(c probes.ErrorClass) bool { return c == probes.ClassReset || c == probes.ClassHTTP5xx }

// runProbe runs one probe with the configured retries.
func (e *Engine) runProbe(ctx context.Context, cfg Config, name string, informational bool, fn func(context.Context) (probes.Result, error)) ProbeOutcome {
	out := ProbeOutcome{Probe: name, Informational: informational}
	start := e.o.Clock.Now()
	for attempt := 0; ; attempt++ {
		res, err := fn(ctx)
		out.Attempts++
		out.Result = res
		if err == nil {
			out.OK = true
			break
		}
		out.Failures++
		out.Class, out.Error = probes.Classify(err), err.Error()
		out.Loading = errors.Is(err, probes.ErrLoading)
		if attempt >= cfg.Retries || !retryable(out.Class) || ctx.Err() != nil {
			break
		}
	}
	out.Duration = e.o.Clock.Now().Sub(start)
	return out
}

// probeHTTP runs the probe set of the target's kind: liveness, then
// readiness, each only when the one before passed; then it reads the
// engine's signals; then the synthetic inference, unless the signals say
// the model is not loaded or the engine sleeps (a probe never loads a
// model or wakes an engine) or their counters show requests completing
// since the last check (idle_aware: the inference would add nothing);
// then the resource probe. It returns the outcomes, the signals (nil when
// none were read) and whether the inference was skipped as passive.
func (e *Engine) probeHTTP(ctx context.Context, cfg Config, p *plugin, t Target) ([]ProbeOutcome, *probes.Signals, bool) {
	pt := probes.Target{ID: t.ID, BaseURL: t.Endpoint, Kind: t.Kind, Model: t.Model, Models: t.Models,
		Capabilities: t.Capabilities, PID: t.PID}
	if m := cfg.Plugins[t.ID].Model; m != "" {
		pt.Model = m
	}
	maxTokens, _ := cfg.maxTokens(t.ID)
	pc := probes.Config{MaxTokens: maxTokens}
	client := p.httpClient()
	run := func(name string, pr probes.Probe) ProbeOutcome {
		pctx, span := e.tracer.Start(ctx, "ai.probe."+name, trace.WithAttributes(attribute.String("vitals.ai.probe", name)))
		defer span.End()
		o := e.runProbe(pctx, cfg, name, name == probes.Resources, func(ctx context.Context) (probes.Result, error) {
			return probes.Run(ctx, pr, client, pt, pc, e.o.Clock.Now)
		})
		if !o.OK {
			span.SetStatus(codes.Error, string(o.Class))
			span.SetAttributes(attribute.String("error.type", string(o.Class)))
		}
		return o
	}
	set := e.o.Registry.Probes(t.Kind)
	var out []ProbeOutcome
	live := run(probes.Liveness, set.Liveness)
	if !live.OK && live.Class == probes.ClassRefused && t.PID > 0 && set.PortOpensLoaded {
		if _, err := e.readProcess(t.PID); err == nil {
			// vLLM, TGI and the like open their port once the model is
			// loaded: a refusal while the process runs is a load.
			live.Loading = true
			live.Error = fmt.Sprintf("process %d runs, its port is not open yet: %s", t.PID, live.Error)
		}
	}
	out = append(out, live)
	if !live.OK {
		return out, nil, false
	}
	if cfg.Readiness && set.Readiness != nil {
		o := run(probes.Readiness, set.Readiness)
		out = append(out, o)
		if !o.OK {
			return out, nil, false
		}
	}
	var sig *probes.Signals
	if cfg.Signals && set.Signals != nil {
		sig = e.readSignals(ctx, client, set.Signals, pt)
	}
	op := set.SyntheticOp(pt)
	passive := false
	if cfg.synthetic(t.ID) && op != "" && !cold(sig, pt.Model) && !asleep(sig) {
		// Passive (not sent) when idle_aware and the signals show others'
		// requests completing since the last check.
		o := e.syntheticCheck(ctx, cfg, p, set.Synthetic, op, pt, pc, sig)
		passive = o.Passive
		if o.Class == probes.ClassCold {
			// The model is not loaded and the probe did not load it: the
			// check stands on liveness and readiness.
			o.Informational = true
		}
		out = append(out, o)
		if !o.OK && !o.Informational {
			return out, sig, false
		}
	}
	if cfg.Resources && ctx.Err() == nil {
		if pt.PID == 0 {
			pt.PID = e.lookupPID(p, t.Endpoint)
		}
		// The signals are read above; the resource probe reads the
		// process.
		if pt.PID > 0 {
			o := run(probes.Resources, probes.ProcessProbe(e.readProcess))
			out = append(out, o)
			if o.Result.Process == nil && t.PID == 0 && pt.PID > 0 {
				// The process found listening is gone (a restart gives a
				// new PID): look again at the next check.
				e.forgetPID(p)
			}
		}
	}
	return out, sig, passive
}

// readSignals reads the engine's signals within the check's deadline, as
// a span of its own. A failed read is counted and logged at debug level,
// and leaves the check without signals: it does not fail the check.
func (e *Engine) readSignals(ctx context.Context, client *http.Client, fn probes.SignalsFunc, pt probes.Target) *probes.Signals {
	ctx, span := e.tracer.Start(ctx, "ai.probe.signals")
	defer span.End()
	sig, err := fn(ctx, client, pt)
	if err != nil {
		class := probes.Classify(err)
		span.SetStatus(codes.Error, string(class))
		span.SetAttributes(attribute.String("error.type", string(class)))
		e.metrics.signals.failed(pt.ID, class)
		e.o.Logger.Debug("ai plugin signals not read", "id", pt.ID, "err", err)
		return nil
	}
	return &sig
}

// synthetic runs the synthetic inference as a GenAI client span. A timeout
// after liveness passed is the stuck class.
func (e *Engine) synthetic(ctx context.Context, cfg Config, client *http.Client, syn probes.Probe, op string, pt probes.Target, pc probes.Config) ProbeOutcome {
	ctx, span := e.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", op), attribute.String("vitals.ai.probe", probes.Synthetic)))
	defer span.End()
	if u, err := url.Parse(pt.BaseURL); err == nil {
		span.SetAttributes(attribute.String("server.address", u.Hostname()))
		if port, err := strconv.Atoi(u.Port()); err == nil {
			span.SetAttributes(attribute.Int("server.port", port))
		}
	}
	o := e.runProbe(ctx, cfg, probes.Synthetic, false, func(ctx context.Context) (probes.Result, error) {
		res, err := probes.Run(ctx, syn, client, pt, pc, e.o.Clock.Now)
		err = probes.AsBudgetError(err, probes.TokenBudget(pc))
		if err != nil && probes.Classify(err) == probes.ClassTimeout {
			err = fmt.Errorf("%w: liveness answered, inference did not finish: %w", probes.ErrStuck, err)
		}
		return res, err
	})
	r := o.Result
	model := r.Model
	if model == "" {
		model = pt.Model
	}
	attrs := e.otel.genAIAttrs(op, pt.Kind, model, pt.BaseURL)
	span.SetAttributes(attrs[1]) // the provider; the others are set above and below
	if r.Model != "" {
		span.SetName(op + " " + r.Model)
		span.SetAttributes(attribute.String("gen_ai.request.model", r.Model))
	}
	if o.Class != probes.ClassCold { // no inference ran
		e.otel.synthetic(ctx, attrs, o)
	}
	if r.CompletionTokens > 0 {
		span.SetAttributes(attribute.Int64("gen_ai.usage.output_tokens", r.CompletionTokens))
	}
	if r.PromptTokens > 0 {
		span.SetAttributes(attribute.Int64("gen_ai.usage.input_tokens", r.PromptTokens))
	}
	if r.TimeToFirstToken > 0 {
		span.SetAttributes(attribute.Float64("vitals.ai.time_to_first_token_seconds", r.TimeToFirstToken.Seconds()))
	}
	if !o.OK {
		span.SetStatus(codes.Error, string(o.Class))
		span.SetAttributes(attribute.String("error.type", string(o.Class)))
	}
	return o
}

// readProcess reads a target's process for the resource probe.
func (e *Engine) readProcess(pid int) (probes.ProcessStats, error) {
	return probes.ReadProcess(e.o.ProcFS, pid)
}

// lookupPID finds the process listening on a loopback endpoint once per
// target.
func (e *Engine) lookupPID(p *plugin, endpoint string) int {
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.pidTry || e.o.FindPID == nil {
		return p.pid
	}
	p.pidTry = true
	u, err := url.Parse(endpoint)
	if err != nil {
		return 0
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0
	}
	pid, err := e.o.FindPID(port)
	if err != nil {
		if !errors.Is(err, probes.ErrNoListener) {
			e.o.Logger.Debug("no pid for ai plugin", "endpoint", endpoint, "err", err)
		}
		return 0
	}
	if pid == os.Getpid() {
		// The agent itself serves the endpoint (an in-process plugin): the
		// plugin has no process of its own, and the agent's CPU and memory
		// are not the plugin's.
		return 0
	}
	p.pid = pid
	return pid
}

// forgetPID drops the PID lookupPID found, so the next check looks again.
func (e *Engine) forgetPID(p *plugin) {
	p.smu.Lock()
	p.pidTry, p.pid = false, 0
	p.smu.Unlock()
}

var _ prometheus.Collector = (*Metrics)(nil)
