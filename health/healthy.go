package health

import (
	"strings"
	"sync/atomic"

	"github.com/vitals-dev/vitals/probes"
)

// healthyProbes are the probes a healthy verdict names, in the order it
// names them; a probe not listed here is named too, at some allocation.
var healthyProbes = [...]string{probes.Liveness, probes.Readiness, probes.Synthetic, ProbeHeartbeat, ProbeBusHealth, ProbeSelf}

// healthyReasons are the reasons made so far, by the set of passed probes
// (a bit each) and, in the top bit, a passive synthetic inference: a check
// of a healthy plugin is decided without building its reason again.
var healthyReasons [1 << (len(healthyProbes) + 1)]atomic.Pointer[string]

// healthyReason says what a healthy verdict stands on: the probes that
// passed and, when the synthetic inference was not sent because the
// server's counters showed others' requests completing, that.
func healthyReason(o Observation) string {
	var mask uint
	other := false
	for _, p := range o.Probes {
		switch {
		case p.Passive:
			mask |= 1 << len(healthyProbes)
		case p.OK && !p.Informational:
			i := indexOf(p.Probe)
			if i < 0 {
				other = true
				continue
			}
			mask |= 1 << i
		}
	}
	if !other {
		if r := healthyReasons[mask].Load(); r != nil {
			return *r
		}
	}
	var names []string
	for _, p := range o.Probes {
		if p.OK && !p.Passive && !p.Informational && (other || indexOf(p.Probe) >= 0) {
			names = append(names, p.Probe)
		}
	}
	var b strings.Builder
	switch len(names) {
	case 0:
		b.WriteString("no probe failed")
	case 1:
		b.WriteString(names[0] + " passed")
	default:
		b.WriteString(strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " passed")
	}
	if mask&(1<<len(healthyProbes)) != 0 {
		b.WriteString("; synthetic inference not sent: the server's counters showed requests completing")
	}
	r := b.String()
	if !other {
		healthyReasons[mask].Store(&r)
	}
	return r
}

func indexOf(probe string) int {
	for i, p := range healthyProbes {
		if p == probe {
			return i
		}
	}
	return -1
}
