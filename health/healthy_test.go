package health

import (
	"testing"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// TestHealthyVerdictSaysWhatPassed: a healthy verdict names the probes it
// stands on, and a synthetic inference left passive because the server's
// counters showed work completing; an informational probe is not named.
// Once made, a reason is not made again.
func TestHealthyVerdictSaysWhatPassed(t *testing.T) {
	ok := func(name string) ProbeOutcome { return ProbeOutcome{Probe: name, OK: true, Attempts: 1} }
	for _, tc := range []struct {
		probes []ProbeOutcome
		want   string
	}{
		{[]ProbeOutcome{ok(probes.Liveness)}, "liveness passed"},
		{[]ProbeOutcome{ok(probes.Liveness), ok(probes.Readiness), ok(probes.Synthetic), {Probe: probes.Resources, OK: true, Informational: true}},
			"liveness, readiness and synthetic passed"},
		{[]ProbeOutcome{ok(probes.Liveness), ok(probes.Readiness), {Probe: probes.Synthetic, OK: true, Passive: true}},
			"liveness and readiness passed; synthetic inference not sent: the server's counters showed requests completing"},
		{[]ProbeOutcome{ok(ProbeHeartbeat)}, "heartbeat passed"},
		{[]ProbeOutcome{ok("custom"), ok(probes.Liveness)}, "custom and liveness passed"},
	} {
		m := NewMachine(Thresholds{Failure: 3, Success: 2, LatencySLO: time.Second, TTFTSLO: time.Second,
			ErrorRate: ErrorRateConfig{Window: 10, MinSamples: 5, DegradeAbove: 0.3, RecoverBelow: 0.1}})
		v := m.Observe(Observation{Probes: tc.probes})
		if v.State != StateHealthy || v.Reason != tc.want {
			t.Errorf("%+v: %s %q, want healthy %q", tc.probes, v.State, v.Reason, tc.want)
		}
	}
	o := Observation{Probes: []ProbeOutcome{ok(probes.Liveness), ok(probes.Readiness)}}
	healthyReason(o)
	if n := testing.AllocsPerRun(100, func() { healthyReason(o) }); n != 0 {
		t.Errorf("a known reason allocates %.0f times, want 0", n)
	}
}
