package health

import (
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/probes"
)

// State is the health state of one AI plugin. docs/architecture.md has
// the rule of each; Machine applies them.
type State string

// The states. Every plugin starts unknown.
const (
	// StateUnknown: not checked yet, not identified yet (its kind is not
	// known), or it never passed a check and has not failed enough to be
	// unhealthy. Never healthy before it is identified.
	StateUnknown State = "unknown"
	// StateHealthy: every probe passed and nothing below holds.
	StateHealthy State = "healthy"
	// StateDegraded: it serves, but breaks its latency or time-to-first-
	// token SLO, has a high error rate, or depends on an unhealthy plugin.
	StateDegraded State = "degraded"
	// StateOverloaded: requests queue over the threshold, or wait with no
	// free slot, while work still completes.
	StateOverloaded State = "overloaded"
	// StateLoading: the process answers (or runs) but its model is not
	// ready yet: llama.cpp's 503 "Loading model", a vLLM or TGI whose
	// process runs with its port not open yet.
	StateLoading State = "loading"
	// StateCold: the model is not loaded, by design (Ollama unloads idle
	// models); the server loads it on the next request. Not a failure.
	StateCold State = "cold"
	// StateSleeping: the engine says it sleeps (vLLM's sleep mode); it
	// serves once woken.
	StateSleeping State = "sleeping"
	// StateStuck: requests are in flight and the server's generated-tokens
	// counter does not move for stuck_after, or the synthetic inference
	// times out while liveness answers.
	StateStuck State = "stuck"
	// StateUnhealthy: a probe failed failure_threshold checks in a row.
	StateUnhealthy State = "unhealthy"
)

// States lists every state, for bounded metric labels, in the order of
// the documentation.
var States = []State{StateUnknown, StateHealthy, StateDegraded, StateOverloaded, StateLoading, StateCold,
	StateSleeping, StateStuck, StateUnhealthy}

// Serving reports whether a plugin in state s should be sent requests:
// healthy, degraded or cold (the first request loads the model). An
// overloaded one is not: routers take it out of rotation until its queue
// drains.
func (s State) Serving() bool {
	switch s {
	case StateHealthy, StateDegraded, StateCold:
		return true
	}
	return false
}

// Failing reports whether s needs a human: stuck or unhealthy.
func (s State) Failing() bool { return s == StateStuck || s == StateUnhealthy }

// AgentStatus maps a state to the host's health vocabulary: healthy and
// cold are ok, stuck and unhealthy failing, the others degraded.
func (s State) AgentStatus() agent.HealthStatus {
	switch s {
	case StateHealthy, StateCold:
		return agent.HealthOK
	case StateStuck, StateUnhealthy:
		return agent.HealthFailing
	}
	return agent.HealthDegraded
}

// ProbeOutcome is one probe of one check.
type ProbeOutcome struct {
	Probe string `json:"probe"`
	OK    bool   `json:"ok"`
	// Passive marks a synthetic inference not sent because the server's
	// own counters showed requests completing since the last check: OK,
	// with no request and no duration. Skipped marks one not sent for a
	// reason of the agent's (its daily token budget spent): Informational,
	// neither a success nor a failure. Reason says why, for both.
	Passive  bool              `json:"passive,omitempty"`
	Skipped  bool              `json:"skipped,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Class    probes.ErrorClass `json:"class,omitempty"`
	Error    string            `json:"error,omitempty"`
	Duration time.Duration     `json:"duration_ns"`
	Attempts int               `json:"attempts"`
	Failures int               `json:"failures"`
	// Informational probes (resources) do not change the state.
	Informational bool `json:"informational,omitempty"`
	// Loading marks a failure that says the model is loading (the
	// probe's error wraps probes.ErrLoading, or the process runs while its
	// port is not open yet): the plugin is loading, not failing.
	Loading bool          `json:"loading,omitempty"`
	Result  probes.Result `json:"-"`
}

// Observation is what one check found, as the Machine sees it.
type Observation struct {
	Time   time.Time
	Probes []ProbeOutcome
	// Latency is the check's latency for the SLO: the synthetic
	// inference's when it ran, else the slowest probe's.
	Latency time.Duration
	// TTFT is the synthetic inference's time to first token, 0 if none.
	TTFT time.Duration
	// UnhealthyDeps are the plugin's declared dependencies that are
	// unhealthy or stuck now.
	UnhealthyDeps []string
	// Unidentified marks a server whose kind is not known yet: it is
	// unknown until identified, or unhealthy when it does not answer.
	Unidentified bool
	// Signals are what the engine said about itself in this check (its
	// /metrics, slots, loaded models), nil when the family reads none or
	// the read failed.
	Signals *probes.Signals
	// Model is the model the checks are about, "" for the server's
	// default: the cold rule looks for it among the loaded models.
	Model string
	// Passive marks a check whose synthetic inference was skipped because
	// the server's own counters showed requests completing since the last
	// check (health.idle_aware): the work of others proved what the
	// inference would have.
	Passive bool
}

// loading returns the first outcome that says the model is loading.
func (o Observation) loading() *ProbeOutcome {
	for i, p := range o.Probes {
		if p.Loading && !p.Informational {
			return &o.Probes[i]
		}
	}
	return nil
}

// withClass returns the first outcome of class c, or nil: probes.ClassCold
// for a probe that found its model not loaded and did not load it,
// probes.ClassAsleep for one that found it asleep and did not wake it.
func (o Observation) withClass(c probes.ErrorClass) *ProbeOutcome {
	for i, p := range o.Probes {
		if p.Class == c {
			return &o.Probes[i]
		}
	}
	return nil
}

// skipped returns the first outcome of a probe not sent for a reason of
// the agent's (a spent token budget), or nil.
func (o Observation) skipped() *ProbeOutcome {
	for i, p := range o.Probes {
		if p.Skipped {
			return &o.Probes[i]
		}
	}
	return nil
}

// OK reports whether every probe that decides the state passed. A check
// that found the model loading is not OK.
func (o Observation) OK() bool {
	for _, p := range o.Probes {
		if !p.OK && !p.Informational {
			return false
		}
	}
	return true
}

// Failed returns the first probe that failed and decides the state, or nil.
func (o Observation) Failed() *ProbeOutcome {
	for i, p := range o.Probes {
		if !p.OK && !p.Informational {
			return &o.Probes[i]
		}
	}
	return nil
}
