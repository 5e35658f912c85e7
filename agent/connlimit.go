package agent

import (
	"net"
	"net/http"
	"sync"
)

// connLimiter bounds the connections of the HTTP front. Unlike a limit
// that stops accepting (netutil.LimitListener), it always accepts: at the
// limit it closes the connection that has been idle longest (one that has
// not sent a complete request yet, or a keep-alive connection between
// requests) to make room, and when none is idle the one whose request has
// run longest. A busy connection is not always working: one whose client
// sent its headers and drips the body stays busy for a whole read_timeout,
// so refusing newcomers while every connection is busy would let a few
// hundred such clients keep /livez out. So neither idle nor slow clients
// can hold the front: a probe of /livez gets in however many of them there
// are, and the timeouts of http.Server end the rest.
type connLimiter struct {
	net.Listener
	max     int
	metrics *frontMetrics

	mu    sync.Mutex
	conns map[net.Conn]*connInfo
	// idle holds the connections that are new or between requests, busy
	// the others, each in the order of their last state change, oldest
	// first: the victim is the head of idle, else of busy, whatever the
	// number of connections.
	idle, busy connList
}

type connInfo struct {
	c          net.Conn
	state      http.ConnState
	prev, next *connInfo
	list       *connList
}

// connList is a doubly linked list of connections, oldest first.
type connList struct{ head, tail *connInfo }

// push appends ci, the newest.
func (l *connList) push(ci *connInfo) {
	ci.list, ci.prev, ci.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = ci
	} else {
		l.head = ci
	}
	l.tail = ci
}

// remove takes ci out of the list it is in.
func (ci *connInfo) remove() {
	l := ci.list
	if ci.prev != nil {
		ci.prev.next = ci.next
	} else {
		l.head = ci.next
	}
	if ci.next != nil {
		ci.next.prev = ci.prev
	} else {
		l.tail = ci.prev
	}
	ci.list, ci.prev, ci.next = nil, nil, nil
}

func newConnLimiter(ln net.Listener, max int, m *frontMetrics) *connLimiter {
	return &connLimiter{Listener: ln, max: max, metrics: m, conns: map[net.Conn]*connInfo{}}
}

// Accept returns the next connection, making room for it first.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var (
			victim net.Conn
			reason string
		)
		if len(l.conns) >= l.max {
			victim, reason = l.victimLocked()
			if victim == nil { // max is at least 1, so only if it was 0
				l.mu.Unlock()
				_ = c.Close()
				continue
			}
			l.forgetLocked(victim)
		}
		l.setLocked(&connInfo{c: c}, http.StateNew)
		n := len(l.conns)
		l.mu.Unlock()
		if victim != nil {
			l.metrics.shed.WithLabelValues(reason).Inc()
			_ = victim.Close()
		}
		l.metrics.conns.Set(float64(n))
		return c, nil
	}
}

// victimLocked returns the connection to close to make room, and why
// (the shed metric's reason): the one idle longest, else the one busy
// longest.
func (l *connLimiter) victimLocked() (net.Conn, string) {
	if l.idle.head != nil {
		return l.idle.head.c, "idle"
	}
	if l.busy.head != nil {
		return l.busy.head.c, "busy"
	}
	return nil, ""
}

// setLocked records ci's state st, as the newest of its list.
func (l *connLimiter) setLocked(ci *connInfo, st http.ConnState) {
	if ci.list != nil {
		ci.remove()
	}
	ci.state = st
	l.conns[ci.c] = ci
	if st == http.StateNew || st == http.StateIdle {
		l.idle.push(ci)
	} else {
		l.busy.push(ci)
	}
}

// forgetLocked stops tracking c.
func (l *connLimiter) forgetLocked(c net.Conn) {
	if ci, ok := l.conns[c]; ok {
		ci.remove()
		delete(l.conns, c)
	}
}

// connState is the http.Server's ConnState hook: it tracks which
// connections are idle and forgets closed and hijacked ones.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	ci, ok := l.conns[c]
	switch {
	case !ok:
	case st == http.StateClosed || st == http.StateHijacked:
		l.forgetLocked(c)
	default:
		l.setLocked(ci, st)
	}
	n := len(l.conns)
	l.mu.Unlock()
	l.metrics.conns.Set(float64(n))
}
