package health_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// counter returns the value of series name of plugin id whose other
// labels match want, 0 when there is none.
func counter(t *testing.T, e *health.Engine, name, id string, want map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] != id {
				continue
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// syntheticRuns counts the verdicts whose check ran a synthetic inference.
func syntheticRuns(vs []health.Status) int {
	n := 0
	for _, v := range vs {
		if v.Last != nil && v.Last.Probe == probes.Synthetic {
			n++
		}
	}
	return n
}

// On a server whose own counters show requests completing, the check
// skips the synthetic inference and counts a passive check; on an idle
// one it runs it, and the tokens it spends are counted.
func TestIdleAwareSynthetic(t *testing.T) {
	cfg := fastConfig()
	// Longer than one of the simulator's background requests (9 tokens,
	// 10ms apart), so one completes between two checks of a busy server.
	cfg.Interval = agent.Duration(250 * time.Millisecond)
	const checks = 6
	for _, tc := range []struct {
		name string
		load int
		busy bool
	}{
		{"busy", 2, true},
		{"idle", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := sim(t, probes.KindVLLM, 1)
			s.SetLoad(tc.load)
			r := newRig(t, cfg)
			id := "vllm-" + tc.name
			r.e.Upsert(target(id, probes.KindVLLM, srv.URL))
			vs := r.await(id, "checked enough", func(vs []health.Status) bool { return len(vs) >= checks })
			passive := counter(t, r.e, "vitals_ai_probe_total", id, map[string]string{"probe": "synthetic", "result": "passive"})
			out := counter(t, r.e, "vitals_ai_probe_tokens_total", id, map[string]string{"type": "completion"})
			if tc.busy {
				// The first check has no earlier count to compare with; a
				// check may fall between two completions.
				if passive < checks-3 || out > 3*probes.MaxSyntheticTokens {
					t.Fatalf("busy server: %v passive checks, %v output tokens spent over %d checks (%d ran the inference)", passive, out, len(vs), syntheticRuns(vs))
				}
				return
			}
			if passive != 0 || out < float64(checks) {
				t.Fatalf("idle server: %v passive checks, %v output tokens spent over %d checks", passive, out, len(vs))
			}
		})
	}
}
