package health_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return true }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) health.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []*fakeTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
}

func TestScheduler(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	const items, limit = 10, 3
	var running, peak atomic.Int32
	var mu sync.Mutex
	perItem := map[string]int{}
	inItem := map[string]bool{}
	release := make(chan struct{})
	started := make(chan string, 100)
	var lags []time.Duration
	s := health.NewScheduler(health.SchedulerOptions{
		Clock: clock, Concurrency: limit,
		Lag: func(d time.Duration) { mu.Lock(); lags = append(lags, d); mu.Unlock() },
	}, func(ctx context.Context, id string, _ time.Time) {
		mu.Lock()
		if inItem[id] {
			t.Errorf("%s runs twice at once", id)
		}
		inItem[id] = true
		perItem[id]++
		mu.Unlock()
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		started <- id
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		mu.Lock()
		inItem[id] = false
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, id := range ids[:items] {
		s.Set(id, time.Second)
	}
	// All are due now (no spread); only limit may start.
	for range limit {
		<-started
	}
	select {
	case id := <-started:
		t.Fatalf("%s started past the concurrency bound", id)
	default:
	}
	// Trigger a running item: it runs again once it ends, not at once.
	s.Trigger("a")
	for i := 0; i < items; i++ {
		release <- struct{}{}
		if i < items-limit {
			<-started
		}
	}
	// "a" was running when triggered (maybe) or not; either way every item
	// ran once; advancing a full interval runs each once more.
	clock.Advance(time.Second)
	allTwice := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids[:items] {
			if perItem[id] < 2 {
				return false
			}
		}
		return true
	}
	for !allTwice() {
		select {
		case <-started:
			release <- struct{}{}
		case <-time.After(20 * time.Second):
			t.Fatal("items did not run again after an interval")
		}
	}
	cancel()
	close(release)
	<-done
	if p := peak.Load(); p > limit {
		t.Errorf("peak concurrency %d > %d", p, limit)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids[:items] {
		if perItem[id] < 2 {
			t.Errorf("%s ran %d times, want at least 2", id, perItem[id])
		}
	}
	if len(lags) == 0 {
		t.Error("no lag measured")
	}
}

// goroutineID returns the id of the calling goroutine, from its stack
// header ("goroutine 42 [running]:").
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := strings.Fields(string(b))
	return f[1]
}

// TestSchedulerReusesWorkers: runs go to at most Concurrency long-lived
// workers, which exit once idle for WorkerIdle.
func TestSchedulerReusesWorkers(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	const limit = 2
	var mu sync.Mutex
	workers := map[string]bool{}
	ran := make(chan struct{}, 100)
	s := health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: limit, WorkerIdle: 50 * time.Millisecond},
		func(ctx context.Context, id string, _ time.Time) {
			mu.Lock()
			workers[goroutineID()] = true
			mu.Unlock()
			ran <- struct{}{}
		})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := runtime.NumGoroutine()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		s.Set(id, time.Second)
	}
	for round := range 6 {
		for range 5 {
			select {
			case <-ran:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: not every item ran", round)
			}
		}
		// Each run is queued again, due a second from the clock's now,
		// before the clock moves: else a late one waits a round more.
		agenttest.Eventually(t, 20*time.Second, "every item queued again", func() bool {
			for _, id := range []string{"a", "b", "c", "d", "e"} {
				if !s.IsQueued(id) {
					return false
				}
			}
			return true
		})
		clock.Advance(time.Second)
	}
	mu.Lock()
	n := len(workers)
	mu.Unlock()
	if n > limit {
		t.Errorf("30 runs went to %d goroutines, want at most %d workers", n, limit)
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		s.Remove(id)
	}
	deadline := time.Now().Add(20 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return runtime.NumGoroutine() <= base+1 }) { // + the Run goroutine
		t.Fatalf("%d goroutines after the workers were idle, want %d", runtime.NumGoroutine(), base+1)
	}
	cancel()
	<-done
}

// TestSchedulerSlack: a wake for a due item also starts the items due
// within Slack after it, but never earlier than a tenth of their interval.
func TestSchedulerSlack(t *testing.T) {
	for _, tt := range []struct {
		name  string
		slack time.Duration
		want  string // the items that start with "a"
	}{
		{"no slack", 0, "a"},
		{"10ms", 10 * time.Millisecond, "a b"},
		{"30ms", 30 * time.Millisecond, "a b c"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1000, 0)}
			// Due times after Set: a now, b +5ms, c +20ms (interval 1s);
			// d +5ms with a 20ms interval, so at most 2ms early.
			spread := map[string]float64{"a": 0, "b": 0.005, "c": 0.02, "d": 0.25}
			var next string
			started := make(chan string, 10)
			s := health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: 4, StartSpread: 1, Slack: tt.slack,
				Rand: func() float64 { return spread[next] }},
				func(ctx context.Context, id string, _ time.Time) { started <- id })
			for _, id := range []string{"a", "b", "c", "d"} {
				next = id
				interval := time.Second
				if id == "d" {
					interval = 20 * time.Millisecond
				}
				s.Set(id, interval)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			want := strings.Fields(tt.want)
			var got []string
			for range want {
				select {
				case id := <-started:
					got = append(got, id)
				case <-time.After(20 * time.Second):
					t.Fatalf("started %v, want %v", got, want)
				}
			}
			select {
			case id := <-started:
				t.Fatalf("%s started too (after %v) without the clock moving", id, got)
			case <-time.After(50 * time.Millisecond): // nothing else may start: the clock has not moved
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("started %v, want %v", got, want)
			}
		})
	}
}

// countingClock counts the timers the scheduler sets: one each time it
// goes to sleep.
type countingClock struct {
	*fakeClock
	timers atomic.Int32
}

func (c *countingClock) NewTimer(d time.Duration) health.Timer {
	c.timers.Add(1)
	return c.fakeClock.NewTimer(d)
}

// TestSchedulerSleepsThroughRunsThatEnd: a run that ends with its next due
// time after the earliest waiting item's does not wake the scheduler,
// which would only set the same timer again (at a hundred checks a second,
// a wake per check cost more than the rest of the scheduling).
func TestSchedulerSleepsThroughRunsThatEnd(t *testing.T) {
	clock := &countingClock{fakeClock: &fakeClock{now: time.Unix(1000, 0)}}
	spread := map[string]float64{"a": 0, "b": 0.5} // a due now, b in 500ms; both every second
	var next string
	started, release := make(chan string, 10), make(chan struct{})
	s := health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: 2, StartSpread: 1,
		Rand: func() float64 { return spread[next] }},
		func(ctx context.Context, id string, _ time.Time) {
			started <- id
			<-release
		})
	for _, id := range []string{"a", "b"} {
		next = id
		s.Set(id, time.Second)
	}
	next = "" // no jitter: a's next run is at +1s, after b's
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case id := <-started:
		if id != "a" {
			t.Fatalf("%s ran first, want a", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a never ran")
	}
	// The scheduler goes to sleep until b is due: a timer, then one more
	// after the wake that the Sets left.
	agenttest.Eventually(t, 20*time.Second, "the scheduler asleep until b is due", func() bool { return clock.timers.Load() >= 2 })
	before := clock.timers.Load()
	// a's run ends and a is queued again, with any wake that asked for;
	// a wake, once taken, sets a timer before the loop looks at ctx.
	close(release)
	agenttest.Eventually(t, 20*time.Second, "a queued again", func() bool { return s.IsQueued("a") })
	agenttest.Eventually(t, 20*time.Second, "no wake pending", func() bool { return !s.WakePending() })
	cancel()
	<-done
	if n := clock.timers.Load(); n != before {
		t.Errorf("the scheduler set %d timers after a's run ended, want none: b is still the earliest", n-before)
	}
}

// TestBenchSchedulerScale: the scheduler alone, in this process, with
// 10 000 items at 10 s (1000 runs a second), as the agent runs them
// (health's default start spread, jitter and slack), each run taking no
// time or waiting as a probe waits for its answer. It reports the lag's
// quantiles and the runs second by second over 20 s after one interval of
// warm-up, and checks only that no item ran twice at once and every item
// ran. VITALS_HEALTH_BENCH=1 runs it; see BENCHMARKS.md.
func TestBenchSchedulerScale(t *testing.T) {
	if os.Getenv("VITALS_HEALTH_BENCH") != "1" {
		t.Skip("benchmark: set VITALS_HEALTH_BENCH=1")
	}
	cfg := health.DefaultConfig()
	for _, tt := range []struct {
		name        string
		wait        time.Duration
		concurrency int
	}{
		{"no work", 0, cfg.Concurrency},
		{"waits 20ms", 20 * time.Millisecond, cfg.Concurrency},
		{"waits 50ms", 50 * time.Millisecond, cfg.Concurrency},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const items, interval, window = 10000, 10 * time.Second, 20 * time.Second
			var mu sync.Mutex
			var lags []time.Duration
			perSecond := map[int64]int{}
			running := make([]atomic.Bool, items)
			ran := make([]atomic.Int32, items)
			warm := time.Now().Add(interval)
			end := warm.Add(window)
			s := health.NewScheduler(health.SchedulerOptions{Concurrency: tt.concurrency,
				StartSpread: cfg.StartSpread, Jitter: cfg.Jitter, Slack: cfg.Slack.D(),
				Lag: func(d time.Duration) {
					if now := time.Now(); now.After(warm) && now.Before(end) {
						mu.Lock()
						lags = append(lags, d)
						perSecond[now.Unix()]++
						mu.Unlock()
					}
				}}, func(ctx context.Context, id string, _ time.Time) {
				i, _ := strconv.Atoi(id)
				if running[i].Swap(true) {
					t.Errorf("%s runs twice at once", id)
				}
				ran[i].Add(1)
				if tt.wait > 0 {
					select {
					case <-time.After(tt.wait):
					case <-ctx.Done():
					}
				}
				running[i].Store(false)
			})
			for i := range items {
				s.Set(strconv.Itoa(i), interval)
			}
			ctx, cancel := context.WithDeadline(context.Background(), end)
			defer cancel()
			s.Run(ctx)
			for i := range items {
				if ran[i].Load() == 0 {
					t.Errorf("item %d never ran", i)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lags) == 0 {
				t.Fatal("no run in the window")
			}
			slices.Sort(lags)
			q := func(p float64) time.Duration { return lags[int(p*float64(len(lags)-1))] }
			var secs []int
			for sec, n := range perSecond {
				if sec > warm.Unix() && sec < end.Unix() { // whole seconds only
					secs = append(secs, n)
				}
			}
			slices.Sort(secs)
			t.Logf("%d items at %s, %d workers, runs %s: %d runs in %s (%.0f/s); a second: min %d, median %d, max %d; lag p50 %s, p90 %s, p99 %s, p99.9 %s, max %s",
				items, interval, tt.concurrency, tt.name, len(lags), window, float64(len(lags))/window.Seconds(),
				secs[0], secs[len(secs)/2], secs[len(secs)-1], q(0.5), q(0.9), q(0.99), q(0.999), lags[len(lags)-1])
		})
	}
}

// TestSchedulerSlackFollowsRate: where items are due more often than a
// handful in Slack, one wake starts early only the runs due within the
// time a handful take, not all of Slack's: at 1000 runs a second, 16 ms
// of them (16 runs), not 100 ms (100 runs), whose tail would wait for the
// workers and whose probes would leave in one burst.
func TestSchedulerSlackFollowsRate(t *testing.T) {
	clock := &countingClock{fakeClock: &fakeClock{now: time.Unix(1000, 0)}}
	const items = 1000 // every second: 1000 runs a second, one due every 1 ms
	var next int
	release := make(chan struct{})
	s := health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: 2 * items, StartSpread: 1,
		Slack: 100 * time.Millisecond, Rand: func() float64 { return max(float64(next)-0.5, 0) / items }},
		func(ctx context.Context, id string, _ time.Time) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		})
	for i := range items {
		next = i // 0 due now, i > 0 at i - 0.5 ms
		s.Set(strconv.Itoa(i), time.Second)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); close(release); <-done }()
	// The first wake starts its batch and the loop sleeps: a timer, then
	// one more after the wake that the Sets left.
	agenttest.Eventually(t, 20*time.Second, "the scheduler asleep after its first wake", func() bool {
		return clock.timers.Load() >= 2 && !s.WakePending()
	})
	var started []int
	for i := range items {
		if !s.IsQueued(strconv.Itoa(i)) {
			started = append(started, i)
		}
	}
	want := make([]int, 17) // 0, and 1 to 16 due at 0.5 ms to 15.5 ms
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(started, want) {
		t.Fatalf("the first wake started %d runs (%v...), want the 17 due within 16 ms", len(started), started[:min(len(started), 20)])
	}
}

// TestEngineRemoveDuringCheck: a plugin removed while its check runs is
// not scheduled again by the state change that check ends with; before,
// it stayed in the scheduler for good, run every interval with nothing
// to check.
func TestEngineRemoveDuringCheck(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	defer close(release)
	cfg := health.DefaultConfig()
	cfg.Retries, cfg.FailureThreshold = 0, 1
	changed := make(chan health.Transition, 10)
	e := health.New(health.Options{Config: cfg, Client: &http.Client{},
		OnTransition: func(_ context.Context, tr health.Transition) { changed <- tr }})
	e.Upsert(health.Target{ID: "a", Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: srv.URL})
	e.Start()
	defer func() { _ = e.Stop(context.Background()) }()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the check never reached the server")
	}
	e.Remove("a")
	release <- struct{}{} // the check's liveness probe fails: a state change
	select {
	case tr := <-changed:
		if tr.Plugin != "a" {
			t.Fatalf("transition of %s", tr.Plugin)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the check ended without a state change")
	}
	if n := e.Scheduled(); n != 0 {
		t.Fatalf("%d items scheduled after the plugin was removed and its check ended, want 0", n)
	}
}

// TestEngineRemoveDuringSetConfig: a plugin removed while a config change
// goes through the plugins it held is not scheduled again by it; before,
// it stayed in the scheduler for good, run every interval with nothing
// to check.
func TestEngineRemoveDuringSetConfig(t *testing.T) {
	cfg := health.DefaultConfig()
	e := health.New(health.Options{Config: cfg, Client: &http.Client{}})
	e.Upsert(health.Target{ID: "a", Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:1"})
	release := e.HoldPlugin("a")
	next := cfg
	next.Jitter = cfg.Jitter / 2
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.SetConfig(next)
	}()
	// The config is stored with the list of plugins taken: SetConfig
	// holds "a" and waits for its lock.
	agenttest.Eventually(t, 10*time.Second, "the config change took its list of plugins", func() bool {
		return e.ConfigJitter() == next.Jitter
	})
	e.Remove("a")
	release()
	<-done
	if n := e.Scheduled(); n != 0 {
		t.Fatalf("%d items scheduled after the plugin was removed during a config change, want 0", n)
	}
}

// TestSchedulerAlignsPhases: 100 items every second, spread at random
// over the second, with the engine's jitter and slack. Aligned, they
// share two phases and the scheduler starts them in two wake-ups a
// second, each item keeping its phase from run to run; at random phases
// the same items take several times the wake-ups.
func TestSchedulerAlignsPhases(t *testing.T) {
	const items, seconds = 100, 3
	wakes := func(t *testing.T, align bool) int {
		clock := &countingClock{fakeClock: &fakeClock{now: time.Unix(1000, 0)}}
		rng := rand.New(rand.NewPCG(1, 2)) // called under the scheduler's lock
		var inFlight atomic.Int32
		var mu sync.Mutex
		starts := map[time.Time]bool{}
		s := health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: 32, StartSpread: 1, Jitter: 0.05,
			Slack: 100 * time.Millisecond, Align: align, Rand: rng.Float64},
			func(ctx context.Context, id string, _ time.Time) {
				mu.Lock()
				starts[clock.Now()] = true
				mu.Unlock()
				inFlight.Add(-1)
			})
		for i := range items {
			s.Set(strconv.Itoa(i), time.Second)
		}
		phase := func(id string) time.Duration { return time.Duration(s.Nominal(id).UnixNano() % int64(time.Second)) }
		first := map[string]time.Duration{}
		phases := map[time.Duration]bool{}
		for i := range items {
			id := strconv.Itoa(i)
			first[id] = phase(id)
			phases[first[id]] = true
		}
		if align && len(phases) != 2 {
			t.Errorf("aligned: %d phases, want 2 (100 items a second, about %d a phase)", len(phases), 64)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		// Move the clock 10 ms at a time; after a step that fired the
		// scheduler's timer, wait until its runs have ended and it sleeps
		// again.
		agenttest.Eventually(t, 20*time.Second, "the scheduler asleep", func() bool { return clock.timers.Load() >= 1 && !s.WakePending() })
		for range seconds * 100 {
			fc := clock.fakeClock
			fc.mu.Lock()
			pending := len(fc.timers)
			fc.mu.Unlock()
			before := clock.timers.Load()
			inFlight.Store(0)
			clock.Advance(10 * time.Millisecond)
			fc.mu.Lock()
			fired := len(fc.timers) < pending
			fc.mu.Unlock()
			if !fired {
				continue
			}
			agenttest.Eventually(t, 20*time.Second, "the scheduler asleep after a wake", func() bool {
				return clock.timers.Load() > before && !s.WakePending() && allQueued(s, items)
			})
		}
		if align {
			for i := range items {
				id := strconv.Itoa(i)
				if p := phase(id); p != first[id] {
					t.Errorf("item %s: phase %s after %d s, %s at first", id, p, seconds, first[id])
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return len(starts)
	}
	aligned, spread := wakes(t, true), wakes(t, false)
	t.Logf("wake-ups that started runs in %d s: aligned %d, at random phases %d", seconds, aligned, spread)
	if aligned > 2*seconds+1 {
		t.Errorf("aligned: %d wake-ups started runs in %d s, want at most %d", aligned, seconds, 2*seconds+1)
	}
	if spread < 2*aligned {
		t.Errorf("at random phases: %d wake-ups against %d aligned, want at least twice as many", spread, aligned)
	}
}

func allQueued(s *health.Scheduler, items int) bool {
	for i := range items {
		if !s.IsQueued(strconv.Itoa(i)) {
			return false
		}
	}
	return true
}

// TestSchedulerRealignsAChangedInterval: an item whose interval changes,
// from within its run (as a verdict changes it to unhealthy_interval and
// back) or while it waits, is on the new interval's grid from the run
// after: at one item, the grid of whole intervals from the Unix epoch.
func TestSchedulerRealignsAChangedInterval(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	ran := make(chan struct{}, 10)
	var s *health.Scheduler
	var runs atomic.Int32
	s = health.NewScheduler(health.SchedulerOptions{Clock: clock, Concurrency: 1, Align: true},
		func(ctx context.Context, id string, _ time.Time) {
			if runs.Add(1) == 1 {
				s.Reschedule(id, 1500*time.Millisecond)
			}
			ran <- struct{}{}
		})
	s.Set("a", time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	onGrid := func(interval time.Duration) {
		t.Helper()
		agenttest.Eventually(t, 20*time.Second, "the item queued after its run", func() bool { return s.IsQueued("a") })
		if n := s.Nominal("a"); n.UnixNano()%int64(interval) != 0 {
			t.Fatalf("next run at %s: %s past the %s grid", n.Format("15:04:05.000"), time.Duration(n.UnixNano()%int64(interval)), interval)
		}
	}

	<-ran // at 1000 s, on the 1 s grid; its run changes the interval
	onGrid(1500 * time.Millisecond)

	s.Reschedule("a", 2500*time.Millisecond) // while it waits, longer
	clock.Advance(s.Nominal("a").Sub(clock.Now()))
	<-ran
	onGrid(2500 * time.Millisecond)
}
