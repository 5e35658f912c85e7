// Package maxprocs runs the agent on one P (GOMAXPROCS=1) while it is
// nearly idle, and on the runtime's default while it is busy.
//
// An agent checking a hundred servers a second uses about 2 % of a core.
// At that load, with more than one P, nearly every goroutine the runtime
// readies (a timer, an answer from the network poller, a scrape) wakes a
// second thread to look for work the first one then runs itself: the wake,
// the spin and the sleep again are about 15 % of its CPU (measured:
// BENCHMARKS.md). node_exporter has defaulted to one P since 1.5, to keep
// its threads off the run queues of every CPU. A busy agent needs its Ps,
// though: 10 000 targets at 10 s on one P start one check in a hundred
// more than 50 ms late, where two start them on time. So the Tuner
// watches the process's CPU time and moves between the two with
// hysteresis.
//
// A GOMAXPROCS set in the environment is the operator's choice and is
// left alone.
package maxprocs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// The defaults: one window of process CPU time every Period; idle below
// Low cores, busy above High.
const (
	Period = 5 * time.Second
	Low    = 0.05
	High   = 0.15
)

// Tuner decides from the process's CPU use whether it runs on one P.
type Tuner struct {
	Low, High float64 // cores: one P below Low, the default above High

	one bool // on one P now
}

// Step takes the CPU used over the last window, in cores, and reports
// whether the process should now run on one P, and whether that changed.
func (t *Tuner) Step(cores float64) (one, changed bool) {
	switch {
	case !t.one && cores < t.Low:
		t.one = true
		return true, true
	case t.one && cores > t.High:
		t.one = false
		return false, true
	}
	return t.one, false
}

// Run tunes GOMAXPROCS until ctx ends, then gives the runtime its default
// back. It returns at once, changing nothing, when GOMAXPROCS is set in
// the environment or the default is already one P.
func Run(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) == 1 || processCPU == nil {
		return
	}
	run(ctx, log, Period, &Tuner{Low: Low, High: High}, processCPU)
}

func run(ctx context.Context, log *slog.Logger, period time.Duration, t *Tuner, cpu func() (time.Duration, error)) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	defer func() {
		if t.one {
			runtime.SetDefaultGOMAXPROCS()
		}
	}()
	last, err := cpu()
	if err != nil {
		log.Warn("GOMAXPROCS stays at the runtime's default: cannot read the process's CPU time", "err", err)
		return
	}
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			used, err := cpu()
			if err != nil {
				continue
			}
			cores := (used - last).Seconds() / now.Sub(lastAt).Seconds()
			last, lastAt = used, now
			one, changed := t.Step(cores)
			if !changed {
				continue
			}
			if one {
				runtime.GOMAXPROCS(1)
			} else {
				runtime.SetDefaultGOMAXPROCS()
			}
			log.Debug("GOMAXPROCS changed with the agent's CPU use", "gomaxprocs", runtime.GOMAXPROCS(0), "cores", cores)
		}
	}
}
