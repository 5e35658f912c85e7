package health

import (
	"testing"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

func sig(tokens, success, failure float64) *probes.Signals {
	s := &probes.Signals{GeneratedTokens: tokens, Requests: map[probes.RequestResult]float64{probes.RequestSuccess: success, probes.RequestFailure: failure}}
	s.Reported = probes.FieldGeneratedTokens | probes.FieldRequests
	return s
}

// The passive rule: work beyond the agent's own since the last check, and
// no failures rising, no counter gone down.
func TestPassiveRule(t *testing.T) {
	own := &probes.Result{CompletionTokens: 2}
	for _, tc := range []struct {
		name      string
		prev, cur *probes.Signals
		own       *probes.Result
		want      bool
	}{
		{"tokens moved", sig(100, 10, 0), sig(140, 10, 0), nil, true},
		{"requests moved", sig(100, 10, 0), sig(100, 12, 0), nil, true},
		{"nothing moved", sig(100, 10, 0), sig(100, 10, 0), nil, false},
		{"only the agent's own inference", sig(100, 10, 0), sig(102, 11, 0), own, false},
		{"the agent's and another's", sig(100, 10, 0), sig(111, 12, 0), own, true},
		{"failures rising", sig(100, 10, 0), sig(140, 12, 1), nil, false},
		{"restarted", sig(100, 10, 0), sig(5, 1, 0), nil, false},
		{"no previous read", nil, sig(140, 12, 0), nil, false},
		{"no read now", sig(100, 10, 0), nil, nil, false},
		{"no counters", &probes.Signals{}, &probes.Signals{Reported: probes.FieldRequestsRunning}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u tokenUse
			u.sample(tc.prev, time.Unix(0, 0), tc.own)
			why, ok := u.passive(tc.cur)
			if ok != tc.want || (ok && why == "") {
				t.Errorf("passive = %v (%q), want %v", ok, why, tc.want)
			}
		})
	}
}

// Tokens per second are the server counter's delta over the time between
// two reads; none across a restart or without a counter.
func TestServerRate(t *testing.T) {
	var u tokenUse
	t0 := time.Unix(1000, 0)
	if _, ok := u.sample(sig(100, 0, 0), t0, nil); ok {
		t.Error("a rate from one read")
	}
	if tps, ok := u.sample(sig(600, 0, 0), t0.Add(10*time.Second), nil); !ok || tps != 50 {
		t.Errorf("rate = %g, %v; want 50", tps, ok)
	}
	if _, ok := u.sample(sig(10, 0, 0), t0.Add(20*time.Second), nil); ok {
		t.Error("a rate across a restart")
	}
	if _, ok := u.sample(&probes.Signals{Reported: probes.FieldRequestsRunning}, t0.Add(30*time.Second), nil); ok {
		t.Error("a rate without a counter")
	}
}

// The daily budget counts per UTC day.
func TestSpentToday(t *testing.T) {
	var u tokenUse
	day := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	u.spend(7, day)
	u.spend(3, day.Add(30*time.Second))
	if got := u.spentToday(day); got != 10 {
		t.Errorf("spent %d, want 10", got)
	}
	if got := u.spentToday(day.Add(2 * time.Minute)); got != 0 {
		t.Errorf("spent %d on the next UTC day, want 0", got)
	}
}
