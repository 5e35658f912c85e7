package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/probes"
)

// probeHTTP runs the probe set of the target's kind: liveness, then
// readiness, each only when the one before passed; then it reads the
// engine's signals; then the synthetic inference, unless the signals say
// the model is not loaded or the engine sleeps (a probe never loads a
// model or wakes an engine) or their counters show requests completing
// since the last check (idle_aware: the inference would add nothing);
// then the resource probe. It returns the outcomes, the signals (nil when
// none were read) and whether the inference was skipped as passive.
func (e *Engine) probeHTTP(ctx context.Context, cfg *Config, p *plugin, t Target) ([]ProbeOutcome, *probes.Signals, bool) {
	pt := probes.Target{ID: t.ID, BaseURL: t.Endpoint, MetricsURL: t.MetricsURL, Kind: t.Kind, Model: t.Model, Models: t.Models,
		Capabilities: t.Capabilities, PID: t.PID}
	if m := cfg.Plugins[t.ID].Model; m != "" {
		pt.Model = m
	}
	maxTokens, _ := cfg.maxTokens(t.ID)
	pc := probes.Config{MaxTokens: maxTokens}
	client := p.httpClient()
	set := e.o.Registry.Probes(t.Kind)
	// Room for every probe the check may run, in one allocation: grown
	// one append at a time, three probes took three, twice the bytes.
	n := 1
	for _, on := range []bool{cfg.Readiness && set.Readiness != nil, cfg.synthetic(t.ID), cfg.Resources} {
		if on {
			n++
		}
	}
	out := make([]ProbeOutcome, 0, n)
	// run appends the outcome of probe pr to out and returns it (out's
	// last, until the next append). Outcomes are written in place, not
	// returned: each copy on the way would be a ProbeOutcome more on the
	// stack under the probe's calls.
	run := func(name string, pr probes.Probe) *ProbeOutcome {
		out = append(out, ProbeOutcome{})
		o := &out[len(out)-1]
		pctx, tr := e.startProbe(ctx, spanOfProbe(name))
		e.runProbe(pctx, cfg, o, name, name == probes.Resources, func(ctx context.Context) (probes.Result, error) {
			return probes.Run(ctx, pr, client, pt, pc, e.o.Clock.Now)
		})
		class := o.Class
		if o.OK {
			class = ""
		}
		tr.end(o.Duration, class, "")
		return o
	}
	if live := run(probes.Liveness, set.Liveness); !live.OK {
		if live.Class == probes.ClassRefused && t.PID > 0 && set.PortOpensLoaded {
			e.refusedWhileLoading(live, t.PID)
		}
		return out, nil, false
	}
	if cfg.Readiness && set.Readiness != nil {
		if o := run(probes.Readiness, set.Readiness); !o.OK {
			return out, nil, false
		}
	}
	var sig *probes.Signals
	if cfg.Signals && set.Signals != nil {
		sig = e.readSignals(ctx, p, client, set.Signals, pt)
	}
	op := set.SyntheticOp(pt)
	passive := false
	if cfg.synthetic(t.ID) && op != "" && !cold(sig, pt.Model) && !asleep(sig) {
		// Passive (not sent) when idle_aware and the signals show others'
		// requests completing since the last check.
		out = append(out, ProbeOutcome{})
		o := &out[len(out)-1]
		e.syntheticCheck(ctx, cfg, p, o, set.Synthetic, op, pt, pc, sig)
		passive = o.Passive
		if o.Class == probes.ClassCold || o.Class == probes.ClassAsleep {
			// The model is not loaded, or asleep, and the probe did not
			// load or wake it: the check stands on liveness and readiness.
			o.Informational = true
		}
		if !o.OK && !o.Informational {
			return out, sig, false
		}
	}
	if cfg.Resources && ctx.Err() == nil {
		if pt.PID == 0 {
			// Looked up at every check: a restarted server is another
			// process, with another PID.
			pt.PID = e.lookupPID(t.Endpoint)
		}
		// The signals are read above; the resource probe reads the
		// process.
		if pt.PID > 0 {
			read := e.readProcess
			if t.PID > 0 {
				read = func(pid int) (probes.ProcessStats, error) { return e.readConfiguredProcess(p, pid) }
			}
			if o := run(probes.Resources, probes.ProcessProbe(read)); o.OK && o.Result.Process != nil && sig != nil && sig.Has(probes.FieldLoadedModels) {
				e.readRunners(o, t.ID, sig)
			}
		}
	}
	return out, sig, passive
}

// refusedWhileLoading marks a liveness probe refused while the server's
// process runs as loading: vLLM, TGI and the like open their port once
// the model is loaded.
func (e *Engine) refusedWhileLoading(live *ProbeOutcome, pid int) {
	if _, err := e.readProcess(pid); err == nil {
		live.Loading = true
		live.Error = fmt.Sprintf("process %d runs, its port is not open yet: %s", pid, live.Error)
	}
}

// readRunners reads the runner children of the server process the
// resource probe o read, for a server that lists its loaded models
// (Ollama), and attributes them to those models.
func (e *Engine) readRunners(o *ProbeOutcome, id string, sig *probes.Signals) {
	mps, err := probes.FindModelProcesses(e.o.ProcFS, o.Result.Process.PID, sig.LoadedModels)
	if err != nil {
		e.o.Logger.Debug("ai plugin runner processes not read", "id", id, "err", err)
	}
	o.Result.ModelProcesses = mps
}

// signalsRetry is how long the checks of a server with no signals
// endpoint (probes.ErrNoSignals: an OpenAI-compatible server without
// /metrics) go without asking it again. A server gains one only when it
// restarts with other flags; asking at every check would double the
// requests of a liveness-only check.
const signalsRetry = 5 * time.Minute

// noSignals remembers that a plugin's server had no signals endpoint; a
// plugin whose server has one keeps none.
type noSignals struct {
	endpoint, metricsURL string // where it was asked
	until                time.Time
}

// readSignals reads the engine's signals within the check's deadline,
// traced as a probe is (startProbe). A failed read is counted and logged
// at debug level, and leaves the check without signals: it does not fail
// the check. A server with no signals endpoint gives empty signals, and is
// not asked again for signalsRetry. p.mu is held.
func (e *Engine) readSignals(ctx context.Context, p *plugin, client *http.Client, fn probes.SignalsFunc, pt probes.Target) *probes.Signals {
	now := e.o.Clock.Now()
	if n := p.noSignals; n != nil && n.endpoint == pt.BaseURL && n.metricsURL == pt.MetricsURL && now.Before(n.until) {
		return &probes.Signals{}
	}
	ctx, tr := e.startProbe(ctx, signalsSpan)
	sig, err := fn(ctx, client, pt)
	took := e.o.Clock.Now().Sub(now)
	if errors.Is(err, probes.ErrNoSignals) {
		p.noSignals = &noSignals{endpoint: pt.BaseURL, metricsURL: pt.MetricsURL, until: now.Add(signalsRetry)}
		tr.end(took, "", "no signals endpoint: "+err.Error())
		e.o.Logger.Debug("ai plugin serves no signals; not asked again before "+signalsRetry.String(), "id", pt.ID, "err", err)
		return &probes.Signals{}
	}
	if err != nil {
		class := probes.Classify(err)
		tr.end(took, class, "")
		e.metrics.signals.failed(pt.ID, class)
		e.o.Logger.Debug("ai plugin signals not read", "id", pt.ID, "err", err)
		return nil
	}
	tr.end(took, "", "")
	p.noSignals = nil
	return &sig
}

// synthetic runs the synthetic inference as a GenAI client span. A timeout
// after liveness passed is the stuck class. Its outcome is written to o.
func (e *Engine) synthetic(ctx context.Context, cfg *Config, o *ProbeOutcome, client *http.Client, syn probes.Probe, op string, pt probes.Target, pc probes.Config) {
	// Operation, provider, server address and port: the span's and the
	// GenAI metrics' attributes; the requested model is known once the
	// inference answered.
	attrs := e.otel.genAIAttrs(op, pt.Kind, pt.BaseURL)
	ctx, span := e.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...),
		trace.WithAttributes(attribute.String("vitals.ai.probe", probes.Synthetic)))
	defer span.End()
	e.runProbe(ctx, cfg, o, probes.Synthetic, false, func(ctx context.Context) (probes.Result, error) {
		res, err := probes.Run(ctx, syn, client, pt, pc, e.o.Clock.Now)
		err = probes.AsBudgetError(err, probes.TokenBudget(pc))
		if err != nil && probes.Classify(err) == probes.ClassTimeout {
			err = fmt.Errorf("%w: liveness answered, inference did not finish: %w", probes.ErrStuck, err)
		}
		return res, err
	})
	r := &o.Result
	model := r.Model
	if model == "" {
		model = pt.Model
	}
	if model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", model))
	}
	if r.Model != "" {
		span.SetName(op + " " + r.Model)
		span.SetAttributes(attribute.String("gen_ai.request.model", r.Model))
	}
	if o.Class != probes.ClassCold && o.Class != probes.ClassAsleep && !o.Skipped { // else no inference ran
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
	if !o.OK && !o.Skipped {
		span.SetStatus(codes.Error, string(o.Class))
		span.SetAttributes(attribute.String("error.type", string(o.Class)))
	}
}

// readProcess reads a target's process for the resource probe.
func (e *Engine) readProcess(pid int) (probes.ProcessStats, error) {
	return probes.ReadProcess(e.o.ProcFS, pid)
}

// readConfiguredProcess reads the process of a target's configured PID,
// and fails once that PID is another process than the one first read (a
// later start time: the server restarted, or the kernel gave its PID to
// another process), rather than report that process as the plugin's.
func (e *Engine) readConfiguredProcess(p *plugin, pid int) (probes.ProcessStats, error) {
	ps, err := e.readProcess(pid)
	if err != nil || ps.StartTimeSeconds == 0 {
		return ps, err
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.procStart == 0 {
		p.procStart = ps.StartTimeSeconds
	}
	if ps.StartTimeSeconds != p.procStart {
		return probes.ProcessStats{}, fmt.Errorf("process %d started at %s, not at %s as when first read: "+
			"the server restarted or its PID is another process now; fix the target's pid", pid,
			time.Unix(int64(ps.StartTimeSeconds), 0).UTC().Format(time.RFC3339),
			time.Unix(int64(p.procStart), 0).UTC().Format(time.RFC3339))
	}
	return ps, nil
}

// lookupPID finds the process listening on a loopback endpoint, 0 when
// there is none (or the agent itself listens). It asks Options.FindPID at
// every check, which must be cheap.
func (e *Engine) lookupPID(endpoint string) int {
	if e.o.FindPID == nil {
		return 0
	}
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
	return pid
}

// probeSpan is the name and attributes of a probe's span, with the
// options that start it, built once: a check does not build them again
// (the SDK copies the attributes it is given).
type probeSpan struct {
	name  string
	attrs []attribute.KeyValue
	start []trace.SpanStartOption
}

// probeSpans are the spans of the probes every check runs.
var probeSpans = func() map[string]probeSpan {
	m := map[string]probeSpan{}
	for _, name := range []string{probes.Liveness, probes.Readiness, probes.Synthetic, probes.Resources} {
		m[name] = newProbeSpan(name)
	}
	return m
}()

func newProbeSpan(name string) probeSpan {
	attrs := []attribute.KeyValue{attribute.String("vitals.ai.probe", name)}
	return probeSpan{name: "ai.probe." + name, attrs: attrs, start: []trace.SpanStartOption{trace.WithAttributes(attrs...)}}
}

func spanOfProbe(name string) probeSpan {
	if s, ok := probeSpans[name]; ok {
		return s
	}
	return newProbeSpan(name)
}

// signalsSpan is the span of reading a server's signals, which has no
// attributes of its own.
var signalsSpan = probeSpan{name: "ai.probe.signals"}

// probeTrace is the trace of one probe of a check: a span of its own under
// the check's, or, while spans stay in the process (Engine.localSpans), an
// event on the check's span as the probe ends. The event has the span's
// name and attributes, vitals.ai.probe.duration_seconds, and error.type
// for a probe that failed: what the span would have said, for a fraction
// of its cost (a span is a start and an end, IDs, a context and a
// snapshot for zPages; an event is an entry in a span recorded anyway).
// Exported, a probe stays a span, as tracing backends show it.
type probeTrace struct {
	span  trace.Span // the probe's; the check's when event is set
	event bool
	s     probeSpan
}

// startProbe starts the trace of probe s under the check's span in ctx.
func (e *Engine) startProbe(ctx context.Context, s probeSpan) (context.Context, probeTrace) {
	if e.localSpans {
		return ctx, probeTrace{span: trace.SpanFromContext(ctx), event: true, s: s}
	}
	ctx, span := e.tracer.Start(ctx, s.name, s.start...)
	return ctx, probeTrace{span: span, s: s}
}

// end ends the trace of a probe that took d: failed with class, or passed
// when class is empty; reason, when not empty, says why it passed without
// an answer (vitals.ai.reason).
func (t probeTrace) end(d time.Duration, class probes.ErrorClass, reason string) {
	if !t.event {
		if class != "" {
			t.span.SetStatus(codes.Error, string(class))
			t.span.SetAttributes(attribute.String("error.type", string(class)))
		}
		if reason != "" {
			t.span.SetAttributes(attribute.String("vitals.ai.reason", reason))
		}
		t.span.End()
		return
	}
	if !t.span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, len(t.s.attrs)+3)
	attrs = append(attrs, t.s.attrs...)
	attrs = append(attrs, attribute.Float64("vitals.ai.probe.duration_seconds", d.Seconds()))
	if class != "" {
		attrs = append(attrs, attribute.String("error.type", string(class)))
	}
	if reason != "" {
		attrs = append(attrs, attribute.String("vitals.ai.reason", reason))
	}
	t.span.AddEvent(t.s.name, trace.WithAttributes(attrs...))
}
