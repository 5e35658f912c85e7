package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// PluginStatus is what the admin API shows of a plugin.
type PluginStatus struct {
	Name         string             `json:"name"`
	Version      string             `json:"version,omitempty"`
	Description  string             `json:"description,omitempty"`
	Priority     Priority           `json:"priority"`
	Dependencies []string           `json:"dependencies,omitempty"`
	Enabled      bool               `json:"enabled"`
	Required     bool               `json:"required"`
	State        State              `json:"state"`
	Since        time.Time          `json:"since"`
	LastError    string             `json:"last_error,omitempty"`
	Timings      map[string]Seconds `json:"timings_seconds,omitempty"`
	// Abandoned is set when the host gave up on a step that timed out and
	// still runs: the plugin (state failed) is never stepped again.
	Abandoned bool    `json:"abandoned,omitempty"`
	Health    *Health `json:"health,omitempty"`
}

// Seconds is a duration shown in seconds.
type Seconds float64

// Plugins returns the status of every registered plugin, in start order
// first, then the disabled ones by name.
func (m *Manager) Plugins() []PluginStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PluginStatus, 0, len(m.entries))
	seen := map[string]bool{}
	for _, name := range m.order {
		out = append(out, m.statusLocked(m.entries[name]))
		seen[name] = true
	}
	var rest []string
	for name := range m.entries {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		out = append(out, m.statusLocked(m.entries[name]))
	}
	return out
}

// Plugin returns one plugin's status, with its health report when it
// implements HealthChecker.
func (m *Manager) Plugin(ctx context.Context, name string) (PluginStatus, bool) {
	m.mu.Lock()
	e, ok := m.entries[name]
	if !ok {
		m.mu.Unlock()
		return PluginStatus{}, false
	}
	st := m.statusLocked(e)
	p := e.plugin
	m.mu.Unlock()
	if st.Abandoned {
		// It may be wedged; its own report is not asked for.
		st.Health = &Health{Status: HealthFailing, Message: st.LastError, Checked: time.Now()}
		return st, true
	}
	if hc, ok := p.(HealthChecker); ok {
		cctx, cancel := context.WithTimeout(ctx, m.stepTimeout())
		h := hc.HealthCheck(cctx)
		cancel()
		st.Health = &h
	}
	return st, true
}

func (m *Manager) statusLocked(e *entry) PluginStatus {
	st := PluginStatus{
		Name: e.name, Enabled: e.pc.Enabled, Required: e.pc.Required,
		State: e.state, Since: e.since, LastError: e.reason,
		Version: e.meta.Version, Description: e.meta.Description, Priority: e.meta.Priority,
		Dependencies: e.meta.Dependencies, Abandoned: e.abandoned,
	}
	if len(e.timings) > 0 {
		st.Timings = map[string]Seconds{}
		for k, v := range e.timings {
			st.Timings[k] = Seconds(v.Seconds())
		}
	}
	return st
}

// Ready reports whether the agent is ready under the config's readiness
// policy, and every running ReadinessChecker agrees, with the reasons when
// it is not.
func (m *Manager) Ready() error {
	var bad []string
	for _, c := range m.Readiness() {
		if c.Err != nil && !c.Ignored {
			bad = append(bad, c.Name+": "+c.Err.Error())
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// ReadinessCheck is one verdict behind the agent's readiness.
type ReadinessCheck struct {
	// Name is "lifecycle" or "plugin:<name>".
	Name string
	// Err is why the check is not ready; nil when it is.
	Err error
	// Ignored is set for a failed optional plugin under readiness
	// "required": it is reported, but does not make the agent unready.
	Ignored bool
}

// Readiness returns the agent's lifecycle phase while it is not running,
// else one check per enabled plugin in start order: running (and its
// ReadinessChecker agreeing), or why not. The plugins' Ready is called
// outside the manager's lock, so one that blocks holds up only the
// readiness asked of it, not the lifecycle, and one that panics is
// reported as not ready with the panic as its reason.
func (m *Manager) Readiness() []ReadinessCheck {
	m.mu.Lock()
	switch m.phase {
	case phaseNew, phaseStarting:
		m.mu.Unlock()
		return []ReadinessCheck{{Name: "lifecycle", Err: errors.New("the agent is starting")}}
	case phaseStopping, phaseStopped:
		m.mu.Unlock()
		return []ReadinessCheck{{Name: "lifecycle", Err: errors.New("the agent is shutting down")}}
	}
	out := make([]ReadinessCheck, 0, len(m.order))
	ask := make([]ReadinessChecker, len(m.order))
	for i, name := range m.order {
		e := m.entries[name]
		c := ReadinessCheck{Name: "plugin:" + name}
		switch {
		case e.state == StateRunning:
			ask[i], _ = e.plugin.(ReadinessChecker)
		case e.state == StateFailed:
			c.Err = fmt.Errorf("failed: %s", e.reason)
			c.Ignored = !e.pc.Required && m.cfg.Core.Lifecycle.Readiness == ReadinessRequired
		default:
			c.Err = fmt.Errorf("%s", e.state)
		}
		out = append(out, c)
	}
	m.mu.Unlock()
	for i, rc := range ask {
		if rc != nil {
			out[i].Err = ready(rc)
		}
	}
	return out
}

// ready is rc.Ready, with a panic turned into its error.
func ready(rc ReadinessChecker) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("Ready panicked: %v", v)
		}
	}()
	return rc.Ready()
}

// Order returns the current start order of the enabled plugins.
func (m *Manager) Order() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.order...)
}

// RunningPlugins returns the plugin values that are running, in start order.
func (m *Manager) RunningPlugins() []Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Plugin
	for _, name := range m.order {
		if e := m.entries[name]; e.state == StateRunning {
			out = append(out, e.plugin)
		}
	}
	return out
}

// State returns a plugin's state and the reason it failed or was skipped.
func (m *Manager) State(name string) (State, string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		if m.reg.Has(name) {
			return StateRegistered, "", true
		}
		return "", "", false
	}
	return e.state, e.reason, true
}
