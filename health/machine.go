package health

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/probes"
)

// State is the health state of one AI plugin.
type State string

// The states. Every plugin starts unknown.
const (
	StateUnknown   State = "unknown"
	StateHealthy   State = "healthy"
	StateDegraded  State = "degraded"
	StateUnhealthy State = "unhealthy"
)

// States lists every state, for bounded metric labels.
var States = []State{StateUnknown, StateHealthy, StateDegraded, StateUnhealthy}

// Serving reports whether a plugin in state s can take requests: healthy
// or degraded.
func (s State) Serving() bool { return s == StateHealthy || s == StateDegraded }

// AgentStatus maps a state to the host's health vocabulary.
func (s State) AgentStatus() agent.HealthStatus {
	switch s {
	case StateHealthy:
		return agent.HealthOK
	case StateUnhealthy:
		return agent.HealthFailing
	}
	return agent.HealthDegraded
}

// ProbeOutcome is one probe of one check.
type ProbeOutcome struct {
	Probe    string            `json:"probe"`
	OK       bool              `json:"ok"`
	Class    probes.ErrorClass `json:"class,omitempty"`
	Error    string            `json:"error,omitempty"`
	Duration time.Duration     `json:"duration_ns"`
	Attempts int               `json:"attempts"`
	Failures int               `json:"failures"`
	// Informational probes (resources) do not change the state.
	Informational bool          `json:"informational,omitempty"`
	Result        probes.Result `json:"-"`
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
	// unhealthy now.
	UnhealthyDeps []string
}

// OK reports whether every probe that decides the state passed.
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

// Thresholds are the settings of a Machine.
type Thresholds struct {
	Failure, Success int
	LatencySLO       time.Duration
	TTFTSLO          time.Duration
	ErrorRate        ErrorRateConfig
}

func (c Config) thresholds() Thresholds {
	return Thresholds{
		Failure: c.FailureThreshold, Success: c.SuccessThreshold,
		LatencySLO: c.LatencySLO.D(), TTFTSLO: c.TTFTSLO.D(), ErrorRate: c.ErrorRate,
	}
}

// Verdict is the Machine's answer to one observation.
type Verdict struct {
	State   State
	From    State
	Changed bool
	// Reason says why the plugin is in State, for humans.
	Reason string
}

// Machine is the state machine of one plugin. The rules, applied after each
// check:
//
//  1. A probe that failed Failure checks in a row (counted per probe) makes
//     the plugin unhealthy, from any state.
//  2. An unhealthy plugin leaves only after Success good checks in a row;
//     then the error-rate window starts afresh.
//  3. Otherwise the plugin is degraded while the error rate of the window
//     is high (entered at DegradeAbove, left below RecoverBelow, once the
//     window holds MinSamples requests), while its latency or time to first
//     token broke the SLO in Failure good checks in a row (until Success good
//     checks within it), or while a dependency is unhealthy; else healthy.
//  4. A plugin that has never passed a check stays unknown until rule 1
//     makes it unhealthy.
//
// A single failed check therefore moves nothing; that is the damping.
// Machine is not safe for concurrent use; the engine never checks one
// plugin twice at once.
type Machine struct {
	th    Thresholds
	state State

	consecFail   map[string]int
	consecOK     int
	slow, fast   int
	slowDegraded bool
	window       []bool // ring of request outcomes, true = failed
	next, filled int
	failed       int
	rateDegraded bool
}

// NewMachine returns a machine in state unknown.
func NewMachine(th Thresholds) *Machine {
	return &Machine{th: th, state: StateUnknown, consecFail: map[string]int{}, window: make([]bool, th.ErrorRate.Window)}
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// SetThresholds changes the thresholds from the next observation; a new
// window size starts the window afresh.
func (m *Machine) SetThresholds(th Thresholds) {
	if th.ErrorRate.Window != m.th.ErrorRate.Window {
		m.window = make([]bool, th.ErrorRate.Window)
		m.next, m.filled, m.failed = 0, 0, 0
	}
	m.th = th
}

// ErrorRate returns the failed share of the window's requests.
func (m *Machine) ErrorRate() float64 {
	if m.filled == 0 {
		return 0
	}
	return float64(m.failed) / float64(m.filled)
}

func (m *Machine) push(failed bool) {
	if m.filled == len(m.window) {
		if m.window[m.next] {
			m.failed--
		}
	} else {
		m.filled++
	}
	m.window[m.next] = failed
	if failed {
		m.failed++
	}
	m.next = (m.next + 1) % len(m.window)
}

func (m *Machine) resetWindow() {
	clear(m.window)
	m.next, m.filled, m.failed = 0, 0, 0
	m.rateDegraded = false
}

// Observe applies one check's observation and returns the verdict.
func (m *Machine) Observe(o Observation) Verdict {
	from := m.state
	ok := o.OK()
	worst, worstProbe := 0, ""
	for _, p := range o.Probes {
		if p.Informational {
			continue
		}
		for i := 0; i < p.Attempts; i++ {
			m.push(i < p.Failures)
		}
		if p.OK {
			m.consecFail[p.Probe] = 0
		} else {
			m.consecFail[p.Probe]++
		}
	}
	if ok {
		clear(m.consecFail) // every probe that decides passed or did not need to run
	}
	for _, name := range sortedKeys(m.consecFail) {
		if n := m.consecFail[name]; n > worst {
			worst, worstProbe = n, name
		}
	}
	if ok {
		m.consecOK++
		if o.Latency > m.th.LatencySLO || (o.TTFT > 0 && o.TTFT > m.th.TTFTSLO) {
			m.slow++
			m.fast = 0
		} else {
			m.fast++
			m.slow = 0
		}
	} else {
		m.consecOK = 0
	}
	if m.slow >= m.th.Failure {
		m.slowDegraded = true
	} else if m.fast >= m.th.Success {
		m.slowDegraded = false
	}
	er := m.th.ErrorRate
	rate := m.ErrorRate()
	switch {
	case !m.rateDegraded && m.filled >= er.MinSamples && rate >= er.DegradeAbove:
		m.rateDegraded = true
	case m.rateDegraded && rate < er.RecoverBelow:
		m.rateDegraded = false
	}

	var next State
	var reason string
	switch {
	case worst >= m.th.Failure:
		f := o.Failed()
		class := probes.ClassOther
		if f != nil && f.Probe == worstProbe {
			class = f.Class
		}
		next, reason = StateUnhealthy, fmt.Sprintf("%s failed %d checks in a row (%s)", worstProbe, worst, class)
	case from == StateUnhealthy && m.consecOK < m.th.Success:
		next, reason = StateUnhealthy, fmt.Sprintf("recovering: %d of %d good checks", m.consecOK, m.th.Success)
	case from == StateUnknown && !ok:
		next = StateUnknown
		if f := o.Failed(); f != nil {
			reason = fmt.Sprintf("%s failed (%s)", f.Probe, f.Class)
		}
	default:
		if from == StateUnhealthy {
			m.resetWindow()
		}
		var why []string
		if m.rateDegraded {
			why = append(why, fmt.Sprintf("error rate %.0f%% over the last %d requests", 100*m.ErrorRate(), m.filled))
		}
		if m.slowDegraded {
			why = append(why, fmt.Sprintf("latency above its SLO (%s, time to first token %s)", m.th.LatencySLO, m.th.TTFTSLO))
		}
		if len(o.UnhealthyDeps) > 0 {
			why = append(why, "dependency unhealthy: "+strings.Join(o.UnhealthyDeps, ", "))
		}
		next = StateHealthy
		if len(why) > 0 {
			next, reason = StateDegraded, strings.Join(why, "; ")
		}
	}
	// A check that just reached the failure threshold counts from here.
	if next == StateUnhealthy && from != StateUnhealthy {
		m.consecOK = 0
	}
	m.state = next
	return Verdict{State: next, From: from, Changed: next != from, Reason: reason}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
