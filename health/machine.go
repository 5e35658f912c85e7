package health

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// Thresholds are the settings of a Machine.
type Thresholds struct {
	Failure, Success int
	LatencySLO       time.Duration
	TTFTSLO          time.Duration
	ErrorRate        ErrorRateConfig
	// OverloadedQueue is the number of waiting requests at which a plugin
	// whose work completes is overloaded; 0 turns the rule off.
	OverloadedQueue int
	// StuckAfter is how long requests may be in flight with the server's
	// progress counter standing still before the plugin is stuck; 0 turns
	// the rule off.
	StuckAfter time.Duration
}

func (c Config) thresholds() Thresholds {
	return Thresholds{
		Failure: c.FailureThreshold, Success: c.SuccessThreshold,
		LatencySLO: c.LatencySLO.D(), TTFTSLO: c.TTFTSLO.D(), ErrorRate: c.ErrorRate,
		OverloadedQueue: c.OverloadedQueue, StuckAfter: c.StuckAfter.D(),
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
// check, the first that holds deciding:
//
//  1. A server whose kind is not identified yet is unknown, or unhealthy
//     once its liveness failed Failure checks in a row.
//  2. A probe that failed Failure checks in a row (counted per probe) makes
//     the plugin unhealthy, from any state; stuck when that probe is the
//     synthetic inference timing out while liveness answers.
//  3. A check that found the model loading (a probe's error wraps
//     probes.ErrLoading, or the process runs with its port not open yet)
//     makes it loading. Loading is not a failure: it counts towards no
//     threshold and no error rate.
//  4. An unhealthy or stuck plugin leaves only after Success good checks
//     in a row; then the error-rate window starts afresh.
//  5. A plugin that has never passed a check stays unknown until rule 2
//     makes it unhealthy.
//  6. The engine's signals say it sleeps, or a probe found its model
//     asleep and did not wake it (probes.ErrAsleep): sleeping.
//  7. Requests are running or waiting while the server's progress counter
//     (generated tokens, else requests ended) has not moved for
//     StuckAfter: stuck.
//  8. The engine lists the models it holds and the plugin's model (any
//     model, when it names none) is not among them, with nothing in
//     flight; or a probe found its model not loaded and did not load it
//     (probes.ErrCold: the synthetic inference, with signals off): cold.
//  9. For Failure checks in a row requests waited, at least
//     OverloadedQueue of them or with no free slot, while the progress
//     counter moved (since the last check, or within StuckAfter of its
//     last move; the first sample is the baseline): overloaded, until
//     Success checks in a row without.
//  10. Otherwise the plugin is degraded while the error rate of the window
//     is high (entered at DegradeAbove, left below RecoverBelow, once the
//     window holds MinSamples requests), while its latency or time to first
//     token broke the SLO in Failure good checks in a row (until Success good
//     checks within it), or while a dependency is unhealthy; else healthy,
//     with the reason of a synthetic inference skipped (its daily token
//     budget spent), since liveness and readiness alone decided it.
//
// A single failed check therefore moves nothing; that is the damping.
// Machine is not safe for concurrent use; the engine never checks one
// plugin twice at once.
type Machine struct {
	th    Thresholds
	state State

	consecFail map[string]int // failures in a row by probe, only of probes failing now; nil when none
	consecOK   int
	slow, fast int
	// window is the ring of the last ErrorRate.Window request outcomes, a
	// bit each, set for a failure.
	window       []uint64
	next, filled int
	failed       int

	// The progress clock: the last value of the server's progress
	// counter, and when it last moved (or nothing was in flight).
	progress   float64
	progressAt time.Time
	movedAt    time.Time // when the counter last moved
	// Overload damping.
	busy, calm int

	slowDegraded, rateDegraded, sampled, overloaded bool
}

// NewMachine returns a machine in state unknown.
func NewMachine(th Thresholds) *Machine {
	return &Machine{th: th, state: StateUnknown, window: newWindow(th.ErrorRate.Window)}
}

func newWindow(n int) []uint64 { return make([]uint64, (n+63)/64) }

// State returns the current state.
func (m *Machine) State() State { return m.state }

// SetThresholds changes the thresholds from the next observation; a new
// window size starts the window afresh.
func (m *Machine) SetThresholds(th Thresholds) {
	if th.ErrorRate.Window != m.th.ErrorRate.Window {
		m.window = newWindow(th.ErrorRate.Window)
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
	w, bit := &m.window[m.next/64], uint64(1)<<(m.next%64)
	if m.filled == m.th.ErrorRate.Window {
		if *w&bit != 0 {
			m.failed--
		}
	} else {
		m.filled++
	}
	*w &^= bit
	if failed {
		*w |= bit
		m.failed++
	}
	m.next = (m.next + 1) % m.th.ErrorRate.Window
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
	loading := o.loading()
	worst, worstProbe := 0, ""
	for _, p := range o.Probes {
		if p.Informational {
			continue
		}
		if p.Loading {
			delete(m.consecFail, p.Probe)
			continue
		}
		for i := 0; i < p.Attempts; i++ {
			m.push(i < p.Failures)
		}
		if p.OK {
			delete(m.consecFail, p.Probe)
		} else {
			if m.consecFail == nil {
				m.consecFail = map[string]int{}
			}
			m.consecFail[p.Probe]++
		}
	}
	if ok {
		// Every probe that decides passed or did not need to run: a
		// healthy plugin keeps no map.
		m.consecFail = nil
	}
	if len(m.consecFail) > 0 {
		for _, name := range slices.Sorted(maps.Keys(m.consecFail)) {
			if n := m.consecFail[name]; n > worst {
				worst, worstProbe = n, name
			}
		}
	}
	sig := o.Signals
	stalled, moved := m.sample(o)
	stuck := m.th.StuckAfter > 0 && stalled >= m.th.StuckAfter && !asleep(sig)
	if ok && !stuck {
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
	// Work completes when the progress counter moved since the last
	// check, or within stuck_after (a slow server's counter may stand
	// between two close checks).
	if moved {
		m.movedAt = o.Time
	}
	completes := moved || (!m.movedAt.IsZero() && m.th.StuckAfter > 0 && o.Time.Sub(m.movedAt) < m.th.StuckAfter)
	queued := m.queued(sig)
	if queued != "" && completes && !stuck {
		m.busy++
		m.calm = 0
	} else {
		m.calm++
		m.busy = 0
	}
	if m.busy >= m.th.Failure {
		m.overloaded = true
	} else if m.calm >= m.th.Success {
		m.overloaded = false
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
	case o.Unidentified:
		next, reason = StateUnknown, "kind not identified yet"
		if worst >= m.th.Failure {
			next, reason = StateUnhealthy, fmt.Sprintf("%s failed %d checks in a row (%s) before its kind was identified", worstProbe, worst, m.classOf(o, worstProbe))
		}
	case worst >= m.th.Failure:
		class := m.classOf(o, worstProbe)
		next, reason = StateUnhealthy, fmt.Sprintf("%s failed %d checks in a row (%s)", worstProbe, worst, class)
		if worstProbe == probes.Synthetic && class == probes.ClassStuck {
			next, reason = StateStuck, fmt.Sprintf("synthetic inference did not finish %d checks in a row while liveness answered (stuck)", worst)
		}
		if f := o.Failed(); class == probes.ClassConfig && f != nil && f.Probe == worstProbe {
			// The agent's config is wrong, not the server: say what to
			// change (the error names the key).
			reason += ": " + f.Error
		}
	case loading != nil:
		next, reason = StateLoading, fmt.Sprintf("loading its model (%s: %s)", loading.Probe, loading.Error)
	case (from == StateUnhealthy || from == StateStuck) && m.consecOK < m.th.Success:
		next, reason = from, fmt.Sprintf("recovering: %d of %d good checks", m.consecOK, m.th.Success)
	case from == StateUnknown && !ok:
		next = StateUnknown
		if f := o.Failed(); f != nil {
			reason = fmt.Sprintf("%s failed (%s)", f.Probe, f.Class)
		}
	case asleep(sig):
		next, reason = StateSleeping, "the engine sleeps (its weights offloaded or discarded); it serves once woken"
	case o.withClass(probes.ClassAsleep) != nil:
		a := o.withClass(probes.ClassAsleep)
		next, reason = StateSleeping, fmt.Sprintf("the engine sleeps (%s: %s); it serves once woken", a.Probe, a.Error)
	case stuck:
		next, reason = StateStuck, fmt.Sprintf("%s, and the server's %s counter has not moved for %s",
			inFlightText(sig), progressName(sig), stalled.Round(time.Millisecond))
	case cold(sig, o.Model) || o.withClass(probes.ClassCold) != nil:
		next = StateCold
		model := o.Model
		if c := o.withClass(probes.ClassCold); model == "" && c != nil {
			model = c.Result.Model
		}
		if model != "" {
			reason = fmt.Sprintf("model %q is not loaded; the server loads it on the next request", model)
		} else {
			reason = "no model is loaded; the server loads one on the next request"
		}
	case m.overloaded:
		next, reason = StateOverloaded, queued+" while work completes"
		if queued == "" {
			next, reason = StateOverloaded, fmt.Sprintf("calming: %d of %d checks without a queue", m.calm, m.th.Success)
		}
	default:
		if from == StateUnhealthy || from == StateStuck {
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
		if s := o.skipped(); s != nil && next == StateHealthy {
			// Healthy by liveness and readiness alone: say what was not
			// checked.
			reason = s.Probe + " not sent: " + s.Reason
		} else if next == StateHealthy {
			reason = healthyReason(o)
		}
	}
	// A check that just reached the failure threshold counts from here.
	if next.Failing() && !from.Failing() {
		m.consecOK = 0
	}
	m.state = next
	return Verdict{State: next, From: from, Changed: next != from, Reason: reason}
}

// classOf is the class of probe's failure in o, ClassOther when it did not
// fail in o.
func (m *Machine) classOf(o Observation, probe string) probes.ErrorClass {
	if f := o.Failed(); f != nil && f.Probe == probe {
		return f.Class
	}
	for _, p := range o.Probes {
		if p.Probe == probe && !p.OK {
			return p.Class
		}
	}
	return probes.ClassOther
}

// sample moves the progress clock with o's signals. It returns how long
// requests have been in flight with the progress counter standing still
// (0 when it moved, nothing is in flight or the server reports neither),
// and whether the counter moved since the previous sample. A check without
// signals leaves the clock as it was.
func (m *Machine) sample(o Observation) (stalled time.Duration, moved bool) {
	sig := o.Signals
	if sig == nil {
		return 0, false
	}
	v, ok := progressOf(*sig)
	if !ok {
		m.sampled = false
		return 0, false
	}
	// A counter that went down is a restarted server: that is a move too.
	moved = m.sampled && v != m.progress
	if !m.sampled || moved || inFlight(*sig) == 0 {
		m.progressAt = o.Time
	}
	m.progress, m.sampled = v, true
	if inFlight(*sig) == 0 {
		return 0, moved
	}
	return o.Time.Sub(m.progressAt), moved
}

// queued says why sig shows requests queueing ("" when it does not):
// OverloadedQueue or more waiting, or any waiting with every slot busy.
func (m *Machine) queued(sig *probes.Signals) string {
	if sig == nil || !sig.Has(probes.FieldRequestsWaiting) || m.th.OverloadedQueue <= 0 {
		return ""
	}
	w := sig.RequestsWaiting
	switch {
	case w >= float64(m.th.OverloadedQueue):
		return fmt.Sprintf("%g requests waiting (overloaded_queue %d)", w, m.th.OverloadedQueue)
	case w > 0 && sig.Has(probes.FieldSlots) && sig.SlotsIdle == 0 && sig.SlotsBusy > 0:
		return fmt.Sprintf("%g requests waiting with all %d slots busy", w, sig.SlotsBusy)
	}
	return ""
}

// progressOf is the server's progress counter: its generated tokens, else
// the requests it ended.
func progressOf(sig probes.Signals) (float64, bool) {
	if sig.Has(probes.FieldGeneratedTokens) {
		return sig.GeneratedTokens, true
	}
	if sig.Has(probes.FieldRequests) {
		n := 0.0
		for _, v := range sig.Requests {
			n += v
		}
		return n, true
	}
	return 0, false
}

func progressName(sig *probes.Signals) string {
	if sig.Has(probes.FieldGeneratedTokens) {
		return "generated-tokens"
	}
	return "requests-ended"
}

// inFlight is the requests running and waiting that sig reports.
func inFlight(sig probes.Signals) float64 {
	n := 0.0
	if sig.Has(probes.FieldRequestsRunning) {
		n += sig.RequestsRunning
	}
	if sig.Has(probes.FieldRequestsWaiting) {
		n += sig.RequestsWaiting
	}
	if sig.Has(probes.FieldSlots) && !sig.Has(probes.FieldRequestsRunning) {
		n += float64(sig.SlotsBusy)
	}
	return n
}

func inFlightText(sig *probes.Signals) string {
	return fmt.Sprintf("%g requests running and %g waiting", sig.RequestsRunning, sig.RequestsWaiting)
}

// asleep reports whether sig says the engine sleeps.
func asleep(sig *probes.Signals) bool {
	return sig != nil && sig.Has(probes.FieldAsleep) && sig.Asleep > 0
}

// cold reports whether sig lists the models the server holds and model
// (any model, when "") is not among them, with nothing in flight. A name
// matches with or without the default tag ":latest" (Ollama's names).
func cold(sig *probes.Signals, model string) bool {
	if sig == nil || !sig.Has(probes.FieldLoadedModels) || inFlight(*sig) > 0 {
		return false
	}
	if model == "" {
		return len(sig.LoadedModels) == 0
	}
	for _, lm := range sig.LoadedModels {
		if sameModel(lm.Name, model) {
			return false
		}
	}
	return true
}

// sameModel reports whether a and b name the same model, an untagged name
// being the ":latest" tag.
func sameModel(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s, ":") {
			return s + ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}
