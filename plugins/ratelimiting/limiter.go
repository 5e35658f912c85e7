package ratelimiting

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// buckets is a bounded map of token buckets with idle expiry.
type buckets struct {
	mu      sync.Mutex
	m       map[string]*bucket
	limit   rate.Limit
	burst   int
	max     int
	idle    time.Duration
	evicted func()
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newBuckets(perSecond float64, burst, max int, idle time.Duration, evicted func()) *buckets {
	return &buckets{m: map[string]*bucket{}, limit: rate.Limit(perSecond), burst: burst, max: max, idle: idle, evicted: evicted}
}

// reserve takes one token for key at now. ok false means limited, with the
// wait until a token is there.
func (b *buckets) reserve(key string, now time.Time) (ok bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, found := b.m[key]
	if !found {
		if len(b.m) >= b.max {
			b.sweepLocked(now)
		}
		if len(b.m) >= b.max {
			b.evictOldestLocked()
		}
		bk = &bucket{lim: rate.NewLimiter(b.limit, b.burst)}
		b.m[key] = bk
	}
	bk.seen = now
	r := bk.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops buckets idle for longer than the idle timeout.
func (b *buckets) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweepLocked(now)
}

func (b *buckets) sweepLocked(now time.Time) {
	for k, bk := range b.m {
		if now.Sub(bk.seen) > b.idle {
			delete(b.m, k)
		}
	}
}

func (b *buckets) evictOldestLocked() {
	var oldest string
	var t time.Time
	for k, bk := range b.m {
		if oldest == "" || bk.seen.Before(t) {
			oldest, t = k, bk.seen
		}
	}
	if oldest != "" {
		delete(b.m, oldest)
		if b.evicted != nil {
			b.evicted()
		}
	}
}

func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// set changes the rate of every bucket, present and future.
func (b *buckets) set(perSecond float64, burst, max int, idle time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limit, b.burst, b.max, b.idle = rate.Limit(perSecond), burst, max, idle
	for _, bk := range b.m {
		bk.lim.SetLimitAt(now, b.limit)
		bk.lim.SetBurstAt(now, burst)
	}
}
