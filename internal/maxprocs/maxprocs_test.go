package maxprocs

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
)

func TestTunerHysteresis(t *testing.T) {
	tu := &Tuner{Low: 0.1, High: 0.25}
	for i, step := range []struct {
		cores        float64
		one, changed bool
	}{
		{0.5, false, false}, // busy at the default: stays
		{0.2, false, false}, // between the marks: stays
		{0.05, true, true},  // idle: one P
		{0.2, true, false},  // between the marks: stays on one
		{0.25, true, false}, // at the mark, not above it
		{0.3, false, true},  // busy: back to the default
		{0.09, true, true},  // idle again
		{0.0, true, false},  // still idle
		{0.95, false, true}, // saturated one P
	} {
		one, changed := tu.Step(step.cores)
		if one != step.one || changed != step.changed {
			t.Errorf("step %d, %.2f cores: one %v changed %v, want %v %v", i, step.cores, one, changed, step.one, step.changed)
		}
	}
}

// TestRunFollowsCPU drives run with a CPU clock of the test's own: idle,
// it moves the process to one P; busy, back to the runtime's default;
// when its context ends it leaves the default behind.
func TestRunFollowsCPU(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def == 1 {
		t.Skip("one CPU: nothing to tune")
	}
	var busy atomic.Bool
	start := time.Now()
	var idleAt atomic.Int64
	cpu := func() (time.Duration, error) {
		if busy.Load() {
			return time.Duration(idleAt.Load()) + 2*time.Since(start), nil // two cores' worth
		}
		return time.Duration(idleAt.Load()), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, slog.New(slog.DiscardHandler), time.Millisecond, &Tuner{Low: Low, High: High}, cpu)
	}()
	agenttest.Eventually(t, 10*time.Second, "one P while idle", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	busy.Store(true)
	agenttest.Eventually(t, 10*time.Second, "the default while busy", func() bool { return runtime.GOMAXPROCS(0) == def })
	busy.Store(false)
	idleAt.Store(int64(2 * time.Since(start) * 2)) // ahead of any busy reading
	agenttest.Eventually(t, 10*time.Second, "one P while idle again", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != def {
		t.Errorf("GOMAXPROCS %d after run returned, want the default %d", n, def)
	}
}

// TestRunLeavesAnOperatorsSetting: with GOMAXPROCS in the environment Run
// returns at once and changes nothing.
func TestRunLeavesAnOperatorsSetting(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	before := runtime.GOMAXPROCS(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), slog.New(slog.DiscardHandler))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return with GOMAXPROCS set in the environment")
	}
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Errorf("GOMAXPROCS %d, want %d as before", n, before)
	}
}
