package extmanager

import (
	"slices"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// pidCache remembers which process listens on a port. Finding it reads
// every process's file descriptors, and many AI plugins often share one
// server (models behind one endpoint, or one simulated server in a test),
// so the answer is kept and checked at each lookup, cheaply: the port's
// listening sockets (probes.ListenerInodes, over netlink) must be the ones found before, and the
// process must have the start time it had. A server that restarted (new
// sockets, new process) or a PID the kernel gave to another process (other
// start time) is looked up again; a port nobody listens on has no PID.
// One lookup runs at a time, and the lookups of a port asked for while
// one of it runs share the next one: each answer is still checked after it
// was asked for, but 1000 checks a second on one port do not read the
// process's start time 1000 times a second.
//
// Reading the listening sockets is not free either (one dump of all of
// them over netlink, or, where that is refused, /proc/net/tcp: a line for
// every socket of the host, 27 ms and 1.2 MB of garbage with 3600
// sockets), so one read of every port's listeners answers the lookups of
// all ports for socketsAge: plugins on one port, or a thousand local
// servers on a thousand ports, at a 1 s interval read it once a second,
// not once a check or once a port; a restarted server is followed within
// that.
type pidCache struct {
	listening func() (map[int][]uint64, error)
	owner     func(port int, inodes []uint64) (int, error)
	start     func(pid int) (uint64, error)
	now       func() time.Time

	mu      sync.Mutex
	m       map[int]pidEntry
	sockets socketsRead // the last read of every listener

	fmu     sync.Mutex         // for running and next, never held with mu
	running map[int]*pidFlight // a port's lookup in progress
	next    map[int]*pidFlight // the one its callers since will share
}

// pidFlight is one lookup of a port, shared by the callers that wait for it.
type pidFlight struct {
	done    chan struct{} // closed with pid and err set
	pid     int
	err     error
	waiting int // callers sharing it besides the one that runs it
}

// socketsAge is how long a read of the listeners answers lookups.
const socketsAge = time.Second

// socketsRead is one read of the host's listening sockets, by port.
type socketsRead struct {
	ports map[int][]uint64
	err   error
	at    time.Time
}

type pidEntry struct {
	inodes []uint64 // the listening sockets the PID was found for
	pid    int
	start  uint64 // the process's start time, in ticks since boot
	err    error  // the owner could not be found (not ours to read)
}

func newPIDCache() *pidCache {
	return &pidCache{
		listening: func() (map[int][]uint64, error) { return probes.Listeners(nil) },
		owner:     func(port int, inodes []uint64) (int, error) { return probes.FindSocketOwner(nil, port, inodes) },
		start:     func(pid int) (uint64, error) { return probes.ProcessStart(nil, pid) },
		now:       time.Now,
		m:         map[int]pidEntry{},
	}
}

// listeners returns port's listening sockets, from a read of every
// listener at most socketsAge old. Call with c.mu held.
func (c *pidCache) listeners(port int) ([]uint64, error) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := now()
	if r := c.sockets; r.at.IsZero() || t.Sub(r.at) >= socketsAge || t.Before(r.at) {
		ports, err := c.listening()
		c.sockets = socketsRead{ports: ports, err: err, at: t}
	}
	if c.sockets.err != nil {
		return nil, c.sockets.err
	}
	return probes.PortListeners(c.sockets.ports, port)
}

// lookup returns the PID listening on port, as checked after it was
// called: by a lookup of its own, or by the next one of the port, which
// the callers that came while one ran share.
func (c *pidCache) lookup(port int) (int, error) {
	c.fmu.Lock()
	if c.running == nil {
		c.running, c.next = map[int]*pidFlight{}, map[int]*pidFlight{}
	}
	cur := c.running[port]
	if cur == nil {
		f := &pidFlight{done: make(chan struct{})}
		c.running[port] = f
		c.fmu.Unlock()
		return c.fly(port, f)
	}
	f := c.next[port]
	if f != nil {
		f.waiting++
		c.fmu.Unlock()
		<-f.done
		return f.pid, f.err
	}
	f = &pidFlight{done: make(chan struct{})}
	c.next[port] = f
	c.fmu.Unlock()
	<-cur.done // it started before this call: its answer may be older
	c.fmu.Lock()
	delete(c.next, port)
	c.running[port] = f
	c.fmu.Unlock()
	return c.fly(port, f)
}

// fly runs f, the lookup of port, and hands its answer to those who wait.
func (c *pidCache) fly(port int, f *pidFlight) (int, error) {
	c.mu.Lock()
	f.pid, f.err = c.resolve(port)
	c.mu.Unlock()
	c.fmu.Lock()
	if c.running[port] == f {
		delete(c.running, port)
	}
	c.fmu.Unlock()
	close(f.done)
	return f.pid, f.err
}

// resolve checks port's cached PID, or finds it. Call with c.mu held.
func (c *pidCache) resolve(port int) (int, error) {
	inodes, err := c.listeners(port)
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
