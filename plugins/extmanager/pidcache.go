package extmanager

import (
	"sync"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// pidCache remembers which process listens on a port. Finding it reads
// every process's file descriptors, and many AI plugins often share one
// server (models behind one endpoint, or one simulated server in a test),
// so one look per port serves them all for ttl. One look runs at a time.
type pidCache struct {
	ttl  time.Duration
	find func(port int) (int, error)

	mu sync.Mutex
	m  map[int]pidEntry
}

type pidEntry struct {
	pid int
	err error
	at  time.Time
}

func newPIDCache(ttl time.Duration) *pidCache {
	return &pidCache{ttl: ttl, find: func(port int) (int, error) { return probes.FindListener(nil, port) }, m: map[int]pidEntry{}}
}

// lookup returns the PID listening on port, from the cache while fresh.
func (c *pidCache) lookup(port int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[port]; ok && time.Since(e.at) < c.ttl {
		return e.pid, e.err
	}
	pid, err := c.find(port)
	c.m[port] = pidEntry{pid: pid, err: err, at: time.Now()}
	return pid, err
}
