package extmanager

import (
	"slices"
	"sync"

	"github.com/vitals-dev/vitals/probes"
)

// pidCache remembers which process listens on a port. Finding it reads
// every process's file descriptors, and many AI plugins often share one
// server (models behind one endpoint, or one simulated server in a test),
// so the answer is kept and checked at each lookup, cheaply: the port's
// listening sockets (/proc/net/tcp) must be the ones found before, and the
// process must have the start time it had. A server that restarted (new
// sockets, new process) or a PID the kernel gave to another process (other
// start time) is looked up again; a port nobody listens on has no PID.
// One lookup runs at a time.
type pidCache struct {
	inodes func(port int) ([]uint64, error)
	owner  func(port int, inodes []uint64) (int, error)
	start  func(pid int) (uint64, error)

	mu sync.Mutex
	m  map[int]pidEntry
}

type pidEntry struct {
	inodes []uint64 // the listening sockets the PID was found for
	pid    int
	start  uint64 // the process's start time, in ticks since boot
	err    error  // the owner could not be found (not ours to read)
}

func newPIDCache() *pidCache {
	return &pidCache{
		inodes: func(port int) ([]uint64, error) { return probes.ListenerInodes(nil, port) },
		owner:  func(port int, inodes []uint64) (int, error) { return probes.FindSocketOwner(nil, port, inodes) },
		start:  func(pid int) (uint64, error) { return probes.ProcessStart(nil, pid) },
		m:      map[int]pidEntry{},
	}
}

// lookup returns the PID listening on port.
func (c *pidCache) lookup(port int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inodes, err := c.inodes(port)
	if err != nil {
		delete(c.m, port)
		return 0, err
	}
	if e, ok := c.m[port]; ok && slices.Equal(e.inodes, inodes) {
		if e.err != nil {
			return 0, e.err // the same listener we could not attribute
		}
		if st, err := c.start(e.pid); err == nil && st == e.start {
			return e.pid, nil
		}
	}
	e := pidEntry{inodes: inodes}
	e.pid, e.err = c.owner(port, inodes)
	if e.err == nil {
		if e.start, e.err = c.start(e.pid); e.err != nil {
			e.pid = 0 // gone as soon as found
		}
	}
	c.m[port] = e
	return e.pid, e.err
}
