package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Reload applies a new, already validated config: plugins newly enabled are
// started, newly disabled ones stopped, and changed ones reloaded (or
// stopped and started anew, with their dependents, if they cannot reload).
// A config whose plugins cannot be built or ordered is rejected and nothing
// changes. Failures of single plugins while applying leave them failed and
// are returned joined. A plugin whose Reload fails keeps running its old
// section, and Config records that old section, so the next reload of the
// same file tries again instead of reporting success; so is a plugin that
// failed earlier.
func (m *Manager) Reload(ctx context.Context, cfg *Config) error {
	m.op.Lock()
	defer m.op.Unlock()
	if ph := m.currentPhase(); ph != phaseRunning {
		return errors.New("reload: agent is not running")
	}
	ctx, span := m.tracer.Start(ctx, "agent.reload")
	defer span.End()
	// A reload applies the whole file: a plugin that failed is tried again,
	// so a reload that leaves it failed is not reported as applied.
	retry := map[string]bool{}
	m.mu.Lock()
	for name, e := range m.entries {
		if e.state == StateFailed && cfg.Plugin(name).Enabled {
			retry[name] = true
		}
	}
	m.mu.Unlock()
	err := m.apply(ctx, cfg, retry)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.notifyChanged()
	return err
}

// apply moves the running set to cfg; plugins named in retry are restarted
// even if their config did not change.
func (m *Manager) apply(ctx context.Context, cfg *Config, retry map[string]bool) error {
	newOrder, newDeps, fresh, err := m.build(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errReloadRejected, err)
	}

	m.mu.Lock()
	oldOrder := append([]string(nil), m.order...)
	old := map[string]*entry{}
	for k, v := range m.entries {
		old[k] = v
	}
	m.mu.Unlock()

	// Decide what happens to each plugin.
	var stopping []string        // stop, in reverse old order
	restart := map[string]bool{} // stop now, start again with the new value
	reload := map[string]bool{}  // running, call Reload
	for _, name := range oldOrder {
		o, n := old[name], fresh[name]
		switch {
		case o.abandoned: // never stepped again; reported below
		case n.plugin == nil: // disabled now
			stopping = append(stopping, name)
		case !o.pc.Section.Equal(n.pc.Section) && o.state == StateRunning:
			if _, ok := o.plugin.(Reloader); ok {
				reload[name] = true
			} else {
				restart[name] = true
			}
		case o.state == StateFailed && (retry[name] || !o.pc.Section.Equal(n.pc.Section) || o.pc.Required != n.pc.Required):
			restart[name] = true
		}
	}
	// Whoever needs a restarted plugin is restarted too: it holds the old
	// plugin's services.
	for grew := true; grew; {
		grew = false
		for _, name := range newOrder {
			if restart[name] || old[name] == nil || old[name].plugin == nil {
				continue
			}
			for _, d := range newDeps[name] {
				if restart[d] {
					restart[name], grew = true, true
					delete(reload, name)
				}
			}
		}
	}

	var errs []error
	for i := len(oldOrder) - 1; i >= 0; i-- {
		name := oldOrder[i]
		if !restart[name] && !slices.Contains(stopping, name) {
			continue
		}
		if err := m.stop(ctx, old[name]); err != nil {
			errs = append(errs, err)
		}
		if slices.Contains(stopping, name) {
			m.container.remove(name)
			m.transition(ctx, old[name], "disable", StateDisabled, "", 0)
		}
	}

	// Swap in the new entries: kept plugins keep their values and state.
	// An abandoned plugin keeps its entry, so nothing is built beside it.
	m.mu.Lock()
	for name, n := range fresh {
		o := old[name]
		if o != nil && o.abandoned {
			o.pc = n.pc
			if n.plugin != nil && !restart[name] { // a restart's stop said so
				errs = append(errs, fmt.Errorf("plugin %q: %w", name, o.gaveUp))
			}
			continue
		}
		keep := o != nil && o.plugin != nil && n.plugin != nil && !restart[name] && (o.state == StateRunning || o.state == StateFailed)
		if keep {
			if reload[name] {
				// The plugin runs its old section until Reload succeeds;
				// only the switches take effect now.
				o.pc.Enabled, o.pc.Required = n.pc.Enabled, n.pc.Required
			} else {
				o.pc = n.pc
			}
			continue
		}
		if o != nil && o.plugin == nil && n.plugin == nil {
			o.pc = n.pc
			continue
		}
		m.entries[name] = n
	}
	// The recorded config is what each plugin runs: a plugin that is
	// still to reload keeps its old section until Reload succeeds, so a
	// failed Reload is tried again by the next reload of the same file.
	applied := cfg.clone()
	for name := range reload {
		applied.Core.APIGateway.Plugins[name] = old[name].pc
	}
	m.cfg, m.order, m.deps = applied, newOrder, newDeps
	m.mu.Unlock()
	for name := range fresh {
		m.publishState(m.entry(name), "")
	}

	for _, name := range newOrder {
		if !reload[name] {
			continue
		}
		e := m.entry(name)
		r := e.plugin.(Reloader)
		pc := fresh[name].pc
		d, err := m.step(ctx, e, "reload", newBudget(m.stepTimeout()), func(ctx context.Context) error { return r.Reload(ctx, pc.Section) })
		if err != nil {
			errs = append(errs, fmt.Errorf("reload %q: %w", name, err))
			m.log.ErrorContext(ctx, "plugin reload failed; it keeps its old config", "plugin", name, "err", err)
			continue
		}
		m.mu.Lock()
		e.pc = pc
		if e.host != nil {
			e.host.setSection(pc.Section)
		}
		next := m.cfg.clone() // copy on write: Config's callers hold the old one
		next.Core.APIGateway.Plugins[name] = pc
		m.cfg = next
		m.mu.Unlock()
		m.events.Emit(Event{Plugin: name, Step: "reload", From: StateRunning, To: StateRunning, Duration: d, Time: time.Now()})
		m.log.InfoContext(ctx, "plugin reloaded", "plugin", name)
	}

	// Bring up everything new or restarted, in the new order.
	var up []string
	for _, name := range newOrder {
		if m.stateOf(m.entry(name)) == StateRegistered {
			up = append(up, name)
		}
	}
	if len(up) > 0 {
		if err := m.bringUp(ctx, up); err != nil {
			errs = append(errs, err)
		}
		for _, name := range up {
			if st := m.stateOf(m.entry(name)); st == StateFailed {
				errs = append(errs, fmt.Errorf("plugin %q failed: %s", name, m.entry(name).reason))
			}
		}
	}
	return errors.Join(errs...)
}

// Enable switches a plugin on, as a reload of the current config with the
// plugin enabled.
func (m *Manager) Enable(ctx context.Context, name string) error {
	return m.toggle(ctx, name, true)
}

// Disable switches a plugin off. Disabling a plugin that enabled plugins
// depend on is refused with ErrConflict.
func (m *Manager) Disable(ctx context.Context, name string) error {
	return m.toggle(ctx, name, false)
}

func (m *Manager) toggle(ctx context.Context, name string, on bool) error {
	if !m.reg.Has(name) {
		return fmt.Errorf("%w %q", ErrUnknownPlugin, name)
	}
	m.op.Lock()
	defer m.op.Unlock()
	if ph := m.currentPhase(); ph != phaseRunning {
		return errors.New("agent is not running")
	}
	m.mu.Lock()
	cfg := m.cfg.clone()
	failed := m.entries[name].state == StateFailed
	var dependents []string
	if !on {
		for other, deps := range m.deps {
			if slices.Contains(deps, name) {
				dependents = append(dependents, other)
			}
		}
	}
	m.mu.Unlock()
	if len(dependents) > 0 {
		sort.Strings(dependents)
		return fmt.Errorf("%w: %s is needed by %s", ErrConflict, name, strings.Join(dependents, ", "))
	}
	pc := cfg.Plugin(name)
	if pc.Enabled == on && !(on && failed) {
		return nil
	}
	pc.Enabled = on
	cfg.Core.APIGateway.Plugins[name] = pc

	verb := map[bool]string{true: "agent.enable", false: "agent.disable"}[on]
	ctx, span := m.tracer.Start(ctx, verb, trace.WithAttributes(attribute.String("vitals.plugin.name", name)))
	defer span.End()
	// Enabling a failed plugin retries it.
	err := m.apply(ctx, cfg, map[string]bool{name: on && failed})
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.notifyChanged()
	return err
}

func (c *Config) clone() *Config {
	out := *c
	out.Core.APIGateway.Plugins = make(map[string]PluginConfig, len(c.Core.APIGateway.Plugins))
	for k, v := range c.Core.APIGateway.Plugins {
		out.Core.APIGateway.Plugins[k] = v
	}
	return &out
}
