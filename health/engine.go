package health

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	ID       string
	Mode     Mode
	Kind     probes.Kind
	Endpoint string
	// MetricsURL is where the server's metrics are, "" for the kind's
	// default (probes.Target.MetricsURL).
	MetricsURL   string
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
	// when a target has no PID, at every check, so it must be cheap (the
	// ExtManager's cache checks its last answer against the port's
	// sockets and the process's start time); nil turns the lookup off.
	FindPID func(port int) (int, error)
	// Lag, when set, sees every scheduler lag that the
	// vitals_scheduler_lag_seconds histogram sees.
	Lag func(time.Duration)
}

// Status is the engine's view of one plugin.
type Status struct {
	ID        string    `json:"id"`
	State     State     `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Since     time.Time `json:"since"`
	Checked   time.Time `json:"checked,omitempty"`
	Checks    int64     `json:"checks"`
	ErrorRate float64   `json:"error_rate"`
	// Last is the last check, not changed once made: the engine makes
	// one a check, and the catalog keeps the engine's.
	Last  *CheckRecord      `json:"last,omitempty"`
	Class probes.ErrorClass `json:"class,omitempty"`
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

	// localSpans is set when tp's spans stay in the process
	// (probes.LocalTracerProvider): a check's probes are events on its
	// span, not spans of their own (probeTrace).
	localSpans bool

	mu      sync.RWMutex
	cfg     Config
	plugins map[string]*plugin

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

type plugin struct {
	mu        sync.Mutex // held by the check of this plugin; guards machine, tokens and noSignals
	machine   Machine
	tokens    tokenUse
	noSignals *noSignals // the server had no signals endpoint; nil when it had one
	// start are the options that start the check span (its attributes),
	// for startKind and startMode.
	start     []trace.SpanStartOption
	startKind probes.Kind
	startMode Mode

	smu    sync.RWMutex // guards the fields below; never held long
	target Target
	status Status
	client *http.Client // the target's client, with trace context
	// procStart is when the configured PID's process started, as first
	// read: a later read of another start time is another process.
	procStart float64
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
	if l, ok := o.TracerProvider.(probes.LocalTracerProvider); ok && l.SpansStayLocal() {
		e.localSpans = true
	}
	e.otel = newOTelMetrics(o.MeterProvider, o.GenAILatest, e)
	e.sched = NewScheduler(SchedulerOptions{
		Clock: o.Clock, Concurrency: o.Config.Concurrency, StartSpread: o.Config.StartSpread, Jitter: o.Config.Jitter, Slack: o.Config.Slack.D(),
		Align: o.Config.Slack.D() > 0,
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
	e.sched.SetTiming(c.StartSpread, c.Jitter, c.Slack.D(), c.Slack.D() > 0)
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
		// Reschedule, not Set: a plugin removed since the list was taken
		// must not be added back.
		e.sched.Reschedule(id, e.intervalFor(c, id, st))
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
		p = &plugin{target: t, machine: *NewMachine(cfg.thresholds()), client: e.clientFor(t),
			status: Status{ID: t.ID, State: StateUnknown, Since: now}}
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
		p.procStart = 0
	}
	p.smu.Unlock()
	if changed {
		e.sched.Trigger(t.ID)
	}
}

func equalTarget(a, b Target) bool {
	return a.ID == b.ID && a.Mode == b.Mode && a.Kind == b.Kind && a.Endpoint == b.Endpoint && a.MetricsURL == b.MetricsURL && a.Model == b.Model &&
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
	vs := e.views()
	out := make([]Status, len(vs))
	for i, v := range vs {
		out[i] = v.Status
	}
	return out
}

// view is a plugin's status and the capabilities and models of its
// target, as one snapshot.
type view struct {
	Status
	caps   []probes.Capability
	models []probes.Model
}

// views returns every plugin's view, sorted by id.
func (e *Engine) views() []view {
	e.mu.RLock()
	ps := make([]*plugin, 0, len(e.plugins))
	for _, p := range e.plugins {
		ps = append(ps, p)
	}
	e.mu.RUnlock()
	out := make([]view, 0, len(ps))
	for _, p := range ps {
		p.smu.RLock()
		caps, models := p.target.Capabilities, p.target.Models
		p.smu.RUnlock()
		out = append(out, view{p.snapshot(), caps, models})
	}
	slices.SortFunc(out, func(a, b view) int { return strings.Compare(a.ID, b.ID) })
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

var _ prometheus.Collector = (*Metrics)(nil)
