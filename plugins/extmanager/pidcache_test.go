package extmanager

import (
	"errors"
	"testing"
	"time"
)

func TestPIDCacheLooksOncePerPort(t *testing.T) {
	calls := map[int]int{}
	c := newPIDCache(time.Hour)
	c.find = func(port int) (int, error) {
		calls[port]++
		if port == 2 {
			return 0, errors.New("nobody listens")
		}
		return 100 + port, nil
	}
	for range 5 {
		if pid, err := c.lookup(1); pid != 101 || err != nil {
			t.Fatalf("lookup(1) = %d, %v", pid, err)
		}
		if _, err := c.lookup(2); err == nil {
			t.Fatal("lookup(2) lost its error")
		}
	}
	if calls[1] != 1 || calls[2] != 1 {
		t.Errorf("finds per port = %v, want one each", calls)
	}
	c.ttl = 0 // stale at once: looked up again
	c.lookup(1)
	if calls[1] != 2 {
		t.Errorf("stale entry not looked up again: %v", calls)
	}
}
