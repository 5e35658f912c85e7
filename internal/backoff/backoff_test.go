package backoff_test

import (
	"math"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/backoff"
)

func TestExponential(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{
		{0, 250 * time.Millisecond},
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{4, 4 * time.Second},
		{5, 5 * time.Second},
		{1000, 5 * time.Second},
		{math.MaxInt, 5 * time.Second},
	} {
		if got := backoff.Exponential(tt.n, 250*time.Millisecond, 5*time.Second); got != tt.want {
			t.Errorf("Exponential(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
	// A cap near the largest duration does not overflow into a negative wait.
	if got := backoff.Exponential(100, time.Nanosecond, math.MaxInt64); got <= 0 {
		t.Errorf("Exponential near the top = %v", got)
	}
}

func TestJitter(t *testing.T) {
	const d = 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 200 {
		got := backoff.Jitter(d)
		if got < d/2 || got > d {
			t.Fatalf("Jitter(%v) = %v, want within [%v, %v]", d, got, d/2, d)
		}
		seen[got] = true
	}
	if len(seen) < 2 {
		t.Errorf("Jitter(%v) gave one value 200 times: %v", d, seen)
	}
	if got := backoff.Jitter(0); got != 0 {
		t.Errorf("Jitter(0) = %v", got)
	}
}
