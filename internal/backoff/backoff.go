package backoff

import (
	"math/rand/v2"
	"time"
)

// Exponential returns the wait before retry n (0 for the first retry):
// initial doubled n times, capped at max. It never overflows.
func Exponential(n int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 0; i < n && d > 0; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// Jitter returns a wait between d/2 and d: half of d fixed, half random,
// so that clients that failed together do not retry together.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
