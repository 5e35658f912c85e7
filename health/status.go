package health

import (
	"encoding/json"

	"github.com/vitals-dev/vitals/agent"
)

// HistoryService is the name of the container service holding the
// *History of the running health engine; the ExtManager provides it while
// health checks are enabled. Readers (the status page) take recent checks
// from it rather than sampling states themselves.
const HistoryService = "ai_health_history"

// MarshalJSON writes the status with its state in the host's vocabulary
// beside it ("status": ok, degraded or failing), the value the admin API's
// health filter and its users match on.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // no MarshalJSON
	return json.Marshal(struct {
		Status agent.HealthStatus `json:"status"`
		plain
	}{s.State.AgentStatus(), plain(s)})
}

// Reported is the status of a plugin that reported its own health (an
// in-process AI plugin's HealthCheck), before or without the engine's
// checks: its state from the report's status, the report's message as
// the reason.
func Reported(id string, h agent.Health) Status {
	return Status{ID: id, State: StateOf(h.Status), Reason: h.Message, Since: h.Checked, Checked: h.Checked}
}

// StateOf maps the host's health vocabulary to a state: ok is healthy,
// degraded degraded, failing unhealthy, anything else unknown.
func StateOf(h agent.HealthStatus) State {
	switch h {
	case agent.HealthOK:
		return StateHealthy
	case agent.HealthDegraded:
		return StateDegraded
	case agent.HealthFailing:
		return StateUnhealthy
	}
	return StateUnknown
}

// Recent returns the last n checks of plugin kept in memory, oldest first.
// It never reads the store, so it is cheap enough for a page that renders
// every plugin on each request.
func (h *History) Recent(plugin string, n int) []CheckRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.kept[plugin]
	if k == nil || n <= 0 {
		return nil
	}
	out := make([]CheckRecord, 0, min(n, k.checks.count))
	k.checks.each(n, func(key, vary []byte, seq, us int64) {
		out = append(out, h.sym.decodeCheck(plugin, key, vary, seq, us))
	})
	return out
}
