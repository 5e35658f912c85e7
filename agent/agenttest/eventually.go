package agenttest

import (
	"testing"
	"time"
)

// Eventually checks cond every few milliseconds until it holds, and fails
// the test, saying what was awaited, if it still does not after timeout.
// It is the way tests wait for something another goroutine does when no
// channel tells them.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("%s: not after %v", what, timeout)
	}
}

// Within reports whether cond holds within timeout, checking it every few
// milliseconds, for tests that go on (or fail with details of their own)
// when it does not.
func Within(timeout time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}
