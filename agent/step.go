package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// lateStep is a step still running after the host gave up waiting for it.
type lateStep struct {
	step  string
	began time.Time
	done  chan error // receives the step's result when it returns
}

// budget is the bound of one step: waiting for a late step of the same
// plugin counts against it, so a plugin's stop takes at most stop_timeout.
type budget struct {
	d   time.Duration
	end time.Time
}

func newBudget(d time.Duration) budget { return budget{d: d, end: time.Now().Add(d)} }

func (m *Manager) initialize(ctx context.Context, e *entry) error {
	m.container.remove(e.name) // services of an earlier instance
	h := NewHost(e.name, HostOptions{
		Container: m.container, Logger: m.log, Section: e.pc.Section,
		Metrics: m.registerer, TracerProvider: m.tp, Events: m.events,
	})
	m.mu.Lock()
	e.host = h
	m.mu.Unlock()
	m.transition(ctx, e, "initialize", StateInitializing, "", 0)
	b := newBudget(m.stepTimeout())
	d, err := m.step(ctx, e, "initialize", b, func(ctx context.Context) error {
		return e.plugin.Initialize(ctx, h)
	})
	if err != nil {
		m.container.failOwner(e.name, declaredServices(e.plugin), err)
		if m.stillRunning(e) {
			// It may yet register and call Go; collect drops the rest
			// when it returns.
			drop(h)
		} else if herr := m.endHost(ctx, e, "initialize", b); herr != nil {
			err = errors.Join(err, herr)
		}
		if m.abandonedNow(e) {
			return err
		}
		m.transition(ctx, e, "initialize", StateFailed, err.Error(), d)
		return err
	}
	m.mu.Lock()
	e.initialized = true
	m.mu.Unlock()
	m.transition(ctx, e, "initialize", StateInitialized, "", d)
	return nil
}

func (m *Manager) start(ctx context.Context, e *entry) error {
	m.transition(ctx, e, "start", StateStarting, "", 0)
	d, err := m.step(ctx, e, "start", newBudget(m.stepTimeout()), e.plugin.Start)
	if err != nil {
		m.transition(ctx, e, "start", StateFailed, err.Error(), d)
		return err
	}
	m.transition(ctx, e, "start", StateRunning, "", d)
	return nil
}

// stop stops a plugin that initialized; others are left alone. A step of
// the plugin that timed out earlier and still runs is waited for first,
// within the same stop_timeout; if it does not end, the plugin is
// abandoned and Stop is not called. A plugin whose Stop overran its bound
// and still runs is abandoned too: it is left running.
func (m *Manager) stop(ctx context.Context, e *entry) error {
	m.mu.Lock()
	skip := e.abandoned || (!e.initialized && e.late == nil)
	prev, reason, late := e.state, e.reason, e.late
	m.mu.Unlock()
	if skip {
		return nil // Manager.Stop reports abandoned plugins as left running
	}
	b := newBudget(m.stopTimeout())
	waited := m.stillRunning(e)
	if waited {
		m.transition(ctx, e, "stop", StateStopping, fmt.Sprintf("waiting up to %s for its %s, which timed out, to return", b.d, late.step), 0)
		if err := m.settle(ctx, e, "stop", b); err != nil {
			return fmt.Errorf("stop %q: %w", e.name, err)
		}
	}
	m.mu.Lock()
	owed := e.initialized
	e.initialized = false
	m.mu.Unlock()
	if !owed {
		if waited { // its late Initialize failed: back to why it failed
			m.transition(ctx, e, "stop", prev, reason, 0)
		}
		return nil
	}
	if !waited {
		m.transition(ctx, e, "stop", StateStopping, "", 0)
	}
	m.hostOf(e).Cancel() // the plugin's goroutines end while it stops
	d, err := m.step(ctx, e, "stop", b, e.plugin.Stop)
	if err != nil && m.stillRunning(e) {
		// Stop is the last step: nothing waits for it, so the host
		// gives up on the plugin now rather than build another one
		// beside it.
		drop(m.hostOf(e))
		m.abandon(ctx, e, "stop", fmt.Errorf("%w: %w; it is still running", ErrAbandoned, err))
		return fmt.Errorf("stop %q: %w", e.name, err)
	}
	if herr := m.endHost(ctx, e, "stop", b); herr != nil {
		return fmt.Errorf("stop %q: %w", e.name, errors.Join(err, herr))
	}
	if err != nil {
		m.transition(ctx, e, "stop", StateFailed, err.Error(), d)
		return fmt.Errorf("stop %q: %w", e.name, err)
	}
	if prev == StateFailed {
		// Keep the reason it failed for; it is stopped now.
		m.transition(ctx, e, "stop", StateStopped, reason, d)
	} else {
		m.transition(ctx, e, "stop", StateStopped, "", d)
	}
	return nil
}

// drop ends h without waiting for its goroutines (see PluginHost.Close).
func drop(h *PluginHost) {
	if h == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = h.Close(ctx)
}

// hostOf returns the Host of e's instance.
func (m *Manager) hostOf(e *entry) *PluginHost {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.host
}

// abandonedNow reports whether the host gave up on e.
func (m *Manager) abandonedNow(e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.abandoned
}

// endHost ends e's Host after its Stop returned (or its Initialize failed):
// it cancels the plugin's goroutines, ends its event subscriptions, waits
// for the goroutines until b ends and drops the plugin's metric
// collectors (PluginHost.Close). If some goroutines still run then, e is
// abandoned, as for a step that overran its bound, and the error wraps
// ErrAbandoned.
func (m *Manager) endHost(ctx context.Context, e *entry, step string, b budget) error {
	h := m.hostOf(e)
	if h == nil {
		return nil
	}
	wctx, cancel := context.WithDeadline(ctx, b.end)
	defer cancel()
	err := h.Close(wctx)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%w: %w after its %s; restart the agent to recover it", ErrAbandoned, err, step)
	if m.metrics != nil {
		m.metrics.observeStep(e.name, step, "abandoned", time.Since(b.end.Add(-b.d)))
	}
	m.mu.Lock()
	e.abandoned, e.gaveUp, e.stranded = true, err, strandedGoroutines
	m.mu.Unlock()
	if m.metrics != nil {
		m.metrics.abandoned.WithLabelValues(e.name).Set(1)
	}
	m.transition(ctx, e, step, StateFailed, err.Error(), 0)
	go func() {
		<-h.idleChan()
		m.mu.Lock()
		e.returned = true
		m.mu.Unlock()
		m.log.Warn("abandoned plugin's goroutines returned", "plugin", e.name)
	}()
	return err
}

// strandedGoroutines is entry.stranded for a plugin abandoned because the
// goroutines of its Host did not end after its Stop.
const strandedGoroutines = "goroutines"

// skip marks a plugin failed without running it, because a dependency did
// not come up.
func (m *Manager) skip(ctx context.Context, e *entry, reason string) {
	m.log.WarnContext(ctx, "plugin skipped", "plugin", e.name, "reason", reason)
	m.transition(ctx, e, "initialize", StateFailed, "skipped: "+reason, 0)
}

func (m *Manager) failedDependency(name string) (string, State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.deps[name] {
		if de := m.entries[d]; de != nil {
			switch de.state {
			case StateFailed, StateStopped, StateDisabled, StateStopping:
				return d, de.state
			}
		}
	}
	return "", ""
}

// settle makes sure no earlier step of e still runs before the next one,
// step, begins: it waits for a late step until b ends. If the late step
// does not end in time, e is abandoned and the error wraps ErrAbandoned.
func (m *Manager) settle(ctx context.Context, e *entry, step string, b budget) error {
	m.mu.Lock()
	l, gone, why := e.late, e.abandoned, e.gaveUp
	m.mu.Unlock()
	if gone {
		return fmt.Errorf("%s of %q not run: %w", step, e.name, why)
	}
	if l == nil || !m.stillRunning(e) {
		return nil
	}
	m.log.WarnContext(ctx, "plugin step waits for an earlier step that timed out", "plugin", e.name, "step", step, "waits_for", l.step)
	wctx, cancel := context.WithDeadline(ctx, b.end)
	defer cancel()
	select {
	case err := <-l.done:
		m.collect(e, l, err)
		return nil
	case <-wctx.Done():
	}
	err := fmt.Errorf("%w: %s of %q not run: its %s, which timed out, still runs after %s; restart the agent to recover it",
		ErrAbandoned, step, e.name, l.step, time.Since(l.began).Round(time.Millisecond))
	if m.metrics != nil {
		m.metrics.observeStep(e.name, step, "abandoned", time.Since(b.end.Add(-b.d)))
	}
	m.abandon(ctx, e, step, err)
	return err
}

// stillRunning reports whether e has a late step that has not returned; one
// that has is collected.
func (m *Manager) stillRunning(e *entry) bool {
	m.mu.Lock()
	l := e.late
	m.mu.Unlock()
	if l == nil {
		return false
	}
	select {
	case err := <-l.done:
		m.collect(e, l, err)
		return false
	default:
		return true
	}
}

// declaredServices returns the services p says it provides.
func declaredServices(p Plugin) []string {
	if sp, ok := p.(ServiceProvider); ok {
		return sp.Services()
	}
	return nil
}

// collect records the result of a late step that returned. A late
// Initialize that succeeded owes a Stop; one that failed may have left
// services and collectors behind.
func (m *Manager) collect(e *entry, l *lateStep, err error) {
	m.mu.Lock()
	e.late = nil
	if l.step == "initialize" && err == nil {
		e.initialized = true
	}
	h := e.host
	m.mu.Unlock()
	if l.step == "initialize" && err != nil {
		m.container.failOwner(e.name, declaredServices(e.plugin), err)
		drop(h)
	}
	m.log.Info("plugin step returned after its timeout", "plugin", e.name, "step", l.step,
		"took", time.Since(l.began).Round(time.Millisecond), "err", err)
}

// abandon marks e abandoned: failed, with err as the reason, and never
// stepped again.
func (m *Manager) abandon(ctx context.Context, e *entry, step string, err error) {
	m.mu.Lock()
	e.abandoned, e.gaveUp = true, err
	l := e.late
	if l != nil {
		e.stranded = l.step
	}
	m.mu.Unlock()
	if m.metrics != nil {
		m.metrics.abandoned.WithLabelValues(e.name).Set(1)
	}
	m.transition(ctx, e, step, StateFailed, err.Error(), 0)
	if l != nil {
		// Say when, if ever, the abandoned step returns.
		go func() {
			err := <-l.done
			m.mu.Lock()
			e.returned = true
			m.mu.Unlock()
			m.log.Warn("abandoned plugin's step returned", "plugin", e.name, "step", l.step,
				"took", time.Since(l.began).Round(time.Millisecond), "err", err)
		}()
	}
}

// step runs one lifecycle call of one plugin in its own goroutine, bounded
// by b, with panics recovered, inside a span, and records its duration and
// outcome. An earlier step of the plugin that timed out and still runs is
// waited for first, within b (settle); if it does not end, fn is not
// called and the error wraps ErrAbandoned. When fn overruns b, its
// goroutine is recorded as the plugin's late step.
func (m *Manager) step(ctx context.Context, e *entry, step string, b budget, fn func(context.Context) error) (time.Duration, error) {
	ctx, span := m.tracer.Start(ctx, "plugin."+step, trace.WithAttributes(
		attribute.String("vitals.plugin.name", e.name),
		attribute.Int("vitals.plugin.priority", int(e.meta.Priority)),
		attribute.String("vitals.plugin.version", e.meta.Version),
	))
	defer span.End()
	if err := m.settle(ctx, e, step, b); err != nil {
		span.SetAttributes(attribute.String("vitals.plugin.outcome", "abandoned"))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return 0, err
	}
	sctx, cancel := context.WithDeadline(ctx, b.end)
	defer cancel()

	began := time.Now()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		pprof.Do(sctx, pprof.Labels("plugin", e.name, "step", step), func(ctx context.Context) {
			done <- fn(ctx)
		})
	}()
	var err error
	select {
	case err = <-done:
	case <-sctx.Done():
		if ctx.Err() != nil {
			err = fmt.Errorf("%s of %q: %w", step, e.name, context.Cause(ctx))
		} else {
			err = fmt.Errorf("%s of %q %w after %s", step, e.name, ErrStepTimeout, b.d)
		}
		// The goroutine may still run: the next step waits for it.
		m.mu.Lock()
		e.late = &lateStep{step: step, began: began, done: done}
		m.mu.Unlock()
	}
	d := time.Since(began)

	outcome := "success"
	var pe *PanicError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		outcome = "panic"
		m.log.ErrorContext(ctx, "plugin panicked", "plugin", e.name, "step", step, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	case errors.Is(err, ErrStepTimeout):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	span.SetAttributes(attribute.String("vitals.plugin.outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if m.metrics != nil {
		m.metrics.observeStep(e.name, step, outcome, d)
	}
	m.mu.Lock()
	e.timings[step] = d
	m.mu.Unlock()
	return d, err
}

// transition records a new state and tells everyone: the plugin's Base, the
// container's services, the metrics, the events hub and the log.
func (m *Manager) transition(ctx context.Context, e *entry, step string, to State, reason string, d time.Duration) {
	m.mu.Lock()
	from := e.state
	e.state, e.reason, e.since = to, reason, time.Now()
	m.mu.Unlock()
	m.publishState(e, reason)

	ev := Event{Plugin: e.name, Step: step, From: from, To: to, Error: reason, Duration: d, Time: time.Now()}
	m.events.Emit(ev)
	// ctx carries the operation's span (agent.startup, agent.reload ...):
	// the line leads to the trace of the step.
	switch {
	case to == StateFailed:
		m.log.ErrorContext(ctx, "plugin failed", "plugin", e.name, "step", step, "reason", reason)
	case to == StateRunning || to == StateStopped || to == StateDisabled:
		m.log.InfoContext(ctx, "plugin "+string(to), "plugin", e.name, "took", d.Round(time.Microsecond))
	default:
		m.log.DebugContext(ctx, "plugin "+string(to), "plugin", e.name)
	}
}

func (m *Manager) publishState(e *entry, reason string) {
	m.mu.Lock()
	st, p := e.state, e.plugin
	m.mu.Unlock()
	if s, ok := p.(stateSetter); ok {
		s.SetState(st, reason)
	}
	var err error
	if st == StateFailed {
		err = errors.New(reason)
	}
	m.container.setOwnerState(e.name, st, err)
	if m.metrics != nil {
		m.metrics.setState(e.name, st)
		if p != nil {
			m.metrics.setInfo(e.meta)
		}
	}
}
