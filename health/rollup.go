package health

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/probes"
)

// Rollup is the overall AI health of the host.
type Rollup struct {
	Policy string `json:"policy"`
	// Ready says whether the policy is met.
	Ready  bool               `json:"ready"`
	Status agent.HealthStatus `json:"status"`
	Reason string             `json:"reason,omitempty"`
	Counts map[State]int      `json:"counts"`
	// Capabilities answers "can this host serve X right now?".
	Capabilities map[probes.Capability]CapabilityHealth `json:"capabilities"`
}

// CapabilityHealth is the health of one capability over the plugins that
// have it.
type CapabilityHealth struct {
	Ready   bool     `json:"ready"`
	Serving []string `json:"serving"`
	Total   int      `json:"total"`
}

// Rollup adds up the plugins' states by the configured policy:
//
//   - all: ready when every plugin serves (healthy or degraded);
//   - any: ready when at least one serves;
//   - quorum: ready when the serving share is at least rollup.quorum;
//   - per_capability: ready when every capability that some plugin has is
//     served by at least one plugin.
//
// Serving is healthy, degraded, overloaded or cold (State.Serving).
// Status is ok when ready and every plugin is healthy or cold, degraded
// when ready otherwise, failing when not ready. No plugins at all is
// ready.
func (e *Engine) Rollup() Rollup {
	cfg := e.Config().Rollup
	statuses := e.views()
	r := Rollup{Policy: cfg.Policy, Counts: map[State]int{}, Capabilities: map[probes.Capability]CapabilityHealth{}}
	serving, total := 0, len(statuses)
	var down []string
	for _, s := range statuses {
		r.Counts[s.State]++
		if s.State.Serving() {
			serving++
		} else {
			down = append(down, s.ID)
		}
		caps := slices.Clone(s.caps)
		for _, m := range s.models {
			caps = append(caps, m.Capabilities...)
		}
		for _, c := range probes.SortCapabilities(caps) {
			ch := r.Capabilities[c]
			ch.Total++
			if s.State.Serving() {
				ch.Serving = append(ch.Serving, s.ID)
				ch.Ready = true
			}
			r.Capabilities[c] = ch
		}
	}
	switch cfg.Policy {
	case PolicyAny:
		r.Ready = total == 0 || serving > 0
		if !r.Ready {
			r.Reason = "no AI plugin serves"
		}
	case PolicyQuorum:
		r.Ready = total == 0 || float64(serving)/float64(total) >= cfg.Quorum
		if !r.Ready {
			r.Reason = fmt.Sprintf("%d of %d AI plugins serve, quorum is %g", serving, total, cfg.Quorum)
		}
	case PolicyPerCapability:
		r.Ready = true
		var missing []string
		for _, c := range probes.Capabilities() {
			if ch, ok := r.Capabilities[c]; ok && !ch.Ready {
				r.Ready = false
				missing = append(missing, string(c))
			}
		}
		if !r.Ready {
			r.Reason = "no AI plugin serves " + strings.Join(missing, ", ")
		}
	default:
		r.Ready = serving == total
		if !r.Ready {
			r.Reason = "not serving: " + strings.Join(down, ", ")
		}
	}
	switch {
	case !r.Ready:
		r.Status = agent.HealthFailing
	case r.Counts[StateHealthy]+r.Counts[StateCold] == total:
		r.Status = agent.HealthOK
	default:
		r.Status = agent.HealthDegraded
		if r.Reason == "" {
			r.Reason = fmt.Sprintf("%d of %d AI plugins healthy", r.Counts[StateHealthy], total)
		}
	}
	return r
}
