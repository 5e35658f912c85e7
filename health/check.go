package health

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/probes"
)

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
	cctx, span := e.tracer.Start(cctx, "ai.health.check", p.spanStart(id, t)...)
	defer span.End()

	started := e.o.Clock.Now()
	var obs Observation
	e.observe(cctx, &cfg, p, t, &obs)
	if ctx.Err() != nil {
		return // stopping: the results say nothing about the plugin
	}
	e.conclude(ctx, cctx, &cfg, p, id, t, span, started, &obs)
}

// observe runs the probes of a check into obs. It and conclude are
// functions of their own so that the locals of neither are on the stack
// through the probes' calls: a check then runs within a worker's 16 KiB.
func (e *Engine) observe(ctx context.Context, cfg *Config, p *plugin, t Target, obs *Observation) {
	switch t.Mode {
	case ModeHTTP:
		obs.Probes, obs.Signals, obs.Passive = e.probeHTTP(ctx, cfg, p, t)
		_, known := e.o.Registry.Family(t.Kind)
		obs.Unidentified = !known
		obs.Model = t.Model
		if m := cfg.Plugins[t.ID].Model; m != "" {
			obs.Model = m
		}
	default:
		for _, pr := range e.o.Probes[t.Mode] {
			obs.Probes = append(obs.Probes, ProbeOutcome{})
			o := &obs.Probes[len(obs.Probes)-1]
			e.runProbe(ctx, cfg, o, pr.Name, pr.Informational, func(ctx context.Context) (probes.Result, error) {
				return pr.Run(ctx, t)
			})
			if !o.OK && !o.Informational {
				break
			}
		}
	}
}

// conclude decides the verdict of a check whose probes ran into obs
// (cctx is the check's context, under its deadline and in its span), and
// records, exports and announces it.
func (e *Engine) conclude(ctx, cctx context.Context, cfg *Config, p *plugin, id string, t Target, span trace.Span, started time.Time, obs *Observation) {
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
	v := p.machine.Observe(*obs)
	e.metrics.observe(id, *obs, span.SpanContext())
	e.metrics.signals.observe(id, obs.Signals, t.Models)
	e.otel.observe(cctx, id, *obs)

	rec := CheckRecord{Seq: e.seq.Add(1), Plugin: id, Time: obs.Time, Started: started, Duration: obs.Time.Sub(started),
		State: v.State, OK: obs.OK(), Latency: obs.Latency, TTFT: obs.TTFT, Probes: obs.Probes}
	if f := obs.Failed(); f != nil {
		rec.Probe, rec.Class = f.Probe, f.Class
	}
	if tps, ok := e.tokensPerSecond(p, *obs, started); ok {
		rec.TPS = tps
		e.metrics.setTPS(id, tps)
	}
	span.SetAttributes(verdictAttrs(v.State, rec.OK)...)
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
func (e *Engine) transition(ctx context.Context, cfg *Config, t Transition) {
	e.metrics.transition(t.Plugin, t.From, t.To)
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
	e.sched.Reschedule(t.Plugin, e.intervalFor(*cfg, t.Plugin, t.To))
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
func (e *Engine) runProbe(ctx context.Context, cfg *Config, out *ProbeOutcome, name string, informational bool, fn func(context.Context) (probes.Result, error)) {
	*out = ProbeOutcome{Probe: name, Informational: informational}
	start := e.o.Clock.Now()
	for attempt := 0; ; attempt++ {
		res, err := fn(ctx)
		out.Attempts++
		out.Result = res
		if err == nil {
			out.OK = true
			break
		}
		if ns := (*probes.NotSentError)(nil); errors.As(err, &ns) {
			// The probe chose not to send its request: neither a
			// success nor a failure.
			out.Skipped, out.Informational, out.Reason = true, true, ns.Reason
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
}

// spanStart returns the options that start the check span of the plugin
// id with target t (its attributes), built again only when its kind or
// mode changed (the SDK copies the attributes it is given). The plugin
// attribute is the plugin's own; its kind and mode are in an option
// every plugin of that kind and mode shares. The caller holds p.mu.
func (p *plugin) spanStart(id string, t Target) []trace.SpanStartOption {
	if p.start == nil || p.startKind != t.Kind || p.startMode != t.Mode {
		p.start = []trace.SpanStartOption{trace.WithAttributes(attribute.String("vitals.ai.plugin", id)), kindModeAttrs(t.Kind, t.Mode)}
		p.startKind, p.startMode = t.Kind, t.Mode
	}
	return p.start
}

// kindModes are the span start options of a kind and a mode, by
// kindMode.
var kindModes sync.Map

type kindMode struct {
	kind probes.Kind
	mode Mode
}

// kindModeAttrs is the span start option with the attributes of kind and
// mode, made once for each pair.
func kindModeAttrs(kind probes.Kind, mode Mode) trace.SpanStartOption {
	k := kindMode{kind, mode}
	if o, ok := kindModes.Load(k); ok {
		return o.(trace.SpanStartOption)
	}
	o, _ := kindModes.LoadOrStore(k, trace.WithAttributes(attribute.String("vitals.ai.kind", string(kind)),
		attribute.String("vitals.ai.check.mode", string(mode))))
	return o.(trace.SpanStartOption)
}

// verdicts are the attributes of a check span's verdict, by state and
// whether the check passed: every plugin's checks share them.
var verdicts = func() map[State][2][]attribute.KeyValue {
	m := make(map[State][2][]attribute.KeyValue, len(States))
	for _, s := range States {
		m[s] = [2][]attribute.KeyValue{newVerdictAttrs(s, false), newVerdictAttrs(s, true)}
	}
	return m
}()

func newVerdictAttrs(s State, ok bool) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("vitals.ai.state", string(s)), attribute.Bool("vitals.ai.check.ok", ok)}
}

// verdictAttrs returns the attributes of a check span's verdict (the SDK
// copies them).
func verdictAttrs(s State, ok bool) []attribute.KeyValue {
	if v, found := verdicts[s]; found {
		if ok {
			return v[1]
		}
		return v[0]
	}
	return newVerdictAttrs(s, ok)
}
