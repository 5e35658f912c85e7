package health

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Clock is the scheduler's time source; tests inject one they advance.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// RunFunc runs one check of id that was due at due. ctx ends when the
// scheduler stops.
type RunFunc func(ctx context.Context, id string, due time.Time)

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Clock Clock
	// Concurrency bounds the checks running at once.
	Concurrency int
	// StartSpread spreads a new item's first run over this fraction of its
	// interval; Jitter moves each later run by up to ±Jitter × interval.
	StartSpread, Jitter float64
	// Lag, when set, receives each run's lag: how late it started.
	Lag func(time.Duration)
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64
	// Slack starts, with an item that is due, the items due within Slack
	// after it (within a tenth of their interval at most), so that the
	// scheduler and the process wake once for them all. Waking an idle
	// process costs more CPU than the HTTP exchange of a probe. Where the
	// items are due more often than slackRuns in Slack, the window is the
	// time in which slackRuns are due: the process is not idle then, and a
	// larger batch would only start its tail behind the workers and send
	// its probes in bursts.
	Slack time.Duration
	// WorkerIdle is how long a worker waits for its next run before it
	// exits; 0 means 30 s.
	WorkerIdle time.Duration
	// Align puts each new item on a phase shared with others of its
	// interval: its first due time, spread as StartSpread says, is moved
	// to the grid that divides the interval into as many phases as leave
	// about alignRuns items in each at the rate then scheduled. An item's
	// later runs keep its phase (the jitter moves each run, not the
	// phase), so the items of one phase are due within their jitter of
	// each other and Slack starts them in one wake-up: at 100 items a
	// second, two wake-ups a second, not eight or more.
	Align bool
}

// Scheduler runs checks of many items, each at its own interval, never two
// of one item at once, at most Concurrency at once in all. It keeps one
// timer, for the earliest due item, over a heap of due times. A run that
// ends after its next due time is followed at once by the next; runs that
// were missed are not made up.
//
// Runs happen on up to Concurrency worker goroutines that take one run
// after another and exit after WorkerIdle without one. A goroutine per run
// would grow a new stack through every HTTP probe, a tenth of a probe's
// CPU time.
type Scheduler struct {
	o   SchedulerOptions
	run RunFunc

	mu    sync.Mutex
	items map[string]*item
	rate  float64 // runs due a second, of all items: the sum of 1/interval
	queue queue
	wake  chan struct{}
	sem   chan struct{}  // one token per worker
	jobs  chan *item     // to idle workers
	wg    sync.WaitGroup // the workers
}

type item struct {
	id       string
	interval time.Duration
	nominal  time.Time // the run's time before jitter: its phase
	due      time.Time
	running  bool
	again    bool // run again as soon as the current run ends
	// realign: the interval changed since the phase was chosen, so the
	// next run goes to the new interval's grid (Align).
	realign bool
	removed bool
	index   int // in the heap, -1 when not queued
}

// NewScheduler returns a scheduler that calls run for each due check.
func NewScheduler(o SchedulerOptions, run RunFunc) *Scheduler {
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.WorkerIdle <= 0 {
		o.WorkerIdle = 30 * time.Second
	}
	return &Scheduler{o: o, run: run, items: map[string]*item{}, wake: make(chan struct{}, 1), sem: make(chan struct{}, o.Concurrency),
		jobs: make(chan *item)}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Set adds id with interval, or changes the interval of a known id. A new
// item's first run is spread over StartSpread × interval; a shorter
// interval brings a waiting item's next run forward.
func (s *Scheduler) Set(id string, interval time.Duration) {
	s.set(id, interval, true)
}

func (s *Scheduler) set(id string, interval time.Duration, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Clock.Now()
	it, ok := s.items[id]
	if !ok && !add {
		return
	}
	if !ok {
		s.rate += perSecond(interval)
		it = &item{id: id, interval: interval, index: -1}
		it.nominal = now.Add(time.Duration(s.o.StartSpread * s.o.Rand() * float64(interval)))
		if s.o.Align {
			it.nominal = s.align(it.nominal, now, interval)
		}
		it.due = it.nominal
		s.items[id] = it
		heap.Push(&s.queue, it)
		s.poke()
		return
	}
	if it.interval == interval {
		return
	}
	old := it.interval
	it.interval = interval
	s.rate += perSecond(interval) - perSecond(old)
	// The phase was on the old interval's grid. A queued run that comes
	// sooner is moved to the new grid now; otherwise the run after the
	// next one is (a running item, one whose interval grew), or the item
	// would wake the scheduler on a phase of its own for as long as it
	// is scheduled.
	it.realign = s.o.Align
	if it.index >= 0 && interval < old {
		if d := it.due.Add(interval - old); d.Before(it.due) {
			it.due = maxTime(d, now)
			it.nominal = it.due
			if s.o.Align {
				it.nominal = s.align(it.due, now, interval)
				it.due = it.nominal
				it.realign = false
			}
			heap.Fix(&s.queue, it.index)
			s.poke()
		}
	}
}

// align returns t moved to the nearest phase of the grid for interval
// that is not before now. The grid divides the interval into phases
// alignRuns/rate apart at least (the time in which alignRuns runs are due
// at the rate scheduled), counted from the Unix epoch, so that every item
// of one interval shares it.
func (s *Scheduler) align(t, now time.Time, interval time.Duration) time.Time {
	if interval <= 0 || s.rate <= 0 {
		return t
	}
	phases := max(1, int64(math.Ceil(float64(interval)/(alignRuns/s.rate*float64(time.Second)))))
	step := int64(interval) / phases
	if step <= 0 {
		return t
	}
	ns := t.UnixNano()
	at := ns - ns%step
	if ns%step >= step/2 {
		at += step
	}
	for at < now.UnixNano() {
		at += step
	}
	return time.Unix(0, at)
}

// Reschedule changes the interval of a known id as Set does, and does
// nothing for an unknown one: a check that ends after its item was removed
// must not add it back, to run for good with nothing to check.
func (s *Scheduler) Reschedule(id string, interval time.Duration) {
	s.set(id, interval, false)
}

// SetTiming changes StartSpread, Jitter, Slack and Align; runs already
// due keep the times they have, items already added their phases.
func (s *Scheduler) SetTiming(startSpread, jitter float64, slack time.Duration, align bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.StartSpread, s.o.Jitter, s.o.Slack, s.o.Align = startSpread, jitter, slack, align
	s.poke()
}

// Trigger runs id as soon as possible: now if it is waiting, right after
// the current run if it is running.
func (s *Scheduler) Trigger(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[id]
	if !ok {
		return
	}
	if it.running {
		it.again = true
		return
	}
	if it.index >= 0 {
		it.due = s.o.Clock.Now()
		heap.Fix(&s.queue, it.index)
		s.poke()
	}
}

// Remove forgets id; a run in progress finishes.
func (s *Scheduler) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[id]
	if !ok {
		return
	}
	delete(s.items, id)
	s.rate = max(s.rate-perSecond(it.interval), 0)
	it.removed = true
	if it.index >= 0 {
		heap.Remove(&s.queue, it.index)
	}
}

// Len returns how many items are scheduled.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Run dispatches due runs until ctx ends, then waits for the runs in
// progress (which see ctx end) and returns.
func (s *Scheduler) Run(ctx context.Context) {
	defer s.wg.Wait()
	var due, aside []*item // reused from one wake-up to the next
	for {
		clear(due)
		clear(aside)
		due, aside = due[:0], aside[:0]
		s.mu.Lock()
		now := s.o.Clock.Now()
		slack := s.o.Slack
		if s.rate > 0 {
			slack = min(slack, time.Duration(slackRuns/s.rate*float64(time.Second)))
		}
		var wait time.Duration = -1
		for s.queue.Len() > 0 {
			it := s.queue[0]
			early := it.due.Sub(now)
			if early > 0 && (len(due) == 0 || early > slack) {
				wait = early
				break
			}
			heap.Pop(&s.queue)
			if early > it.interval/10 {
				aside = append(aside, it) // within Slack, but too early for its interval
				continue
			}
			it.running = true
			due = append(due, it)
		}
		for _, it := range aside {
			heap.Push(&s.queue, it)
		}
		s.mu.Unlock()
		for _, it := range due {
			if !s.dispatch(ctx, it) {
				return
			}
		}
		if len(due) > 0 {
			continue // time passed while dispatching
		}
		var timer Timer
		var fire <-chan time.Time
		if wait >= 0 {
			timer = s.o.Clock.NewTimer(wait)
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// dispatch hands it to an idle worker, or to a new one while there are
// fewer than Concurrency, or waits for a worker to come free. It returns
// false when ctx ended first.
func (s *Scheduler) dispatch(ctx context.Context, it *item) bool {
	select {
	case s.jobs <- it:
		return true
	default:
	}
	select {
	case s.jobs <- it:
	case s.sem <- struct{}{}:
		s.wg.Add(1)
		go s.worker(ctx, it)
	case <-ctx.Done():
		return false
	}
	return true
}

// worker runs it, then every run it is handed, until it has been idle for
// WorkerIdle or ctx ends.
func (s *Scheduler) worker(ctx context.Context, it *item) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	idle := time.NewTimer(s.o.WorkerIdle)
	defer idle.Stop()
	for {
		s.exec(ctx, it)
		idle.Reset(s.o.WorkerIdle)
		select {
		case it = <-s.jobs:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (s *Scheduler) exec(ctx context.Context, it *item) {
	start := s.o.Clock.Now()
	if s.o.Lag != nil {
		s.o.Lag(max(start.Sub(it.due), 0))
	}
	s.run(ctx, it.id, it.due)

	s.mu.Lock()
	defer s.mu.Unlock()
	it.running = false
	if it.removed || ctx.Err() != nil {
		return
	}
	now := s.o.Clock.Now()
	if it.again {
		it.again = false
		it.due = now
	} else {
		it.nominal = nextRun(it.nominal, start, it.interval)
		if it.realign && s.o.Align {
			it.nominal = s.align(it.nominal, now, it.interval)
		}
		it.realign = false
		j := 0.0
		if s.o.Jitter > 0 {
			j = (2*s.o.Rand() - 1) * s.o.Jitter
		}
		// late: run next at once, do not make up missed runs
		it.due = maxTime(it.nominal.Add(time.Duration(j*float64(it.interval))), now)
	}
	heap.Push(&s.queue, it)
	if it.index == 0 {
		// Otherwise the scheduler's timer is set for an earlier item: a
		// wake now would find nothing to do, and a wake per check costs
		// more than the rest of the scheduling.
		s.poke()
	}
}

// slackRuns is about how many runs one wake starts early, at most, when
// items are due more often than that in Slack (1000 runs a second: 16 ms
// of them, not 100).
const slackRuns = 16

// alignRuns is about how many items Align puts in one phase: at 100
// items a second, two phases a second of 50 each; at 1000, 16 of about 64,
// which their jitter spreads into the same stream as items at random
// phases.
const alignRuns = 64

// nextRun returns the nominal time of the run after one that started at
// start, on the phase of nominal: the first of nominal plus whole
// intervals at least half an interval after start. A run on time is
// followed one interval later; a triggered run half an interval or more
// before its nominal time leaves that run in place; runs missed while a
// run was late are skipped.
func nextRun(nominal, start time.Time, interval time.Duration) time.Time {
	if interval <= 0 {
		return start
	}
	next := start.Add(interval / 2)
	if !nominal.Before(next) {
		return nominal
	}
	k := (next.Sub(nominal) + interval - 1) / interval
	return nominal.Add(k * interval)
}

// perSecond is how often a second an item of interval runs.
func perSecond(interval time.Duration) float64 {
	if interval <= 0 {
		return 0
	}
	return float64(time.Second) / float64(interval)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// queue is a min-heap of items by due time.
type queue []*item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *queue) Push(x any) {
	it := x.(*item)
	it.index = len(*q)
	*q = append(*q, it)
}
func (q *queue) Pop() any {
	old := *q
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	it.index = -1
	*q = old[:n-1]
	return it
}
