package agenttest_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
)

func TestWithin(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	if !agenttest.Within(5*time.Second, func() bool { return n.Load() == 3 }) {
		t.Fatal("a condition that comes true was not seen")
	}
	start := time.Now()
	if agenttest.Within(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported true")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("Within gave up before its timeout")
	}
	agenttest.Eventually(t, time.Second, "at once", func() bool { return true })
}
