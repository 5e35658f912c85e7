package agent

import (
	"net"
	"net/http"
	"sync"
	"time"
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
}

type connInfo struct {
	state http.ConnState
	since time.Time // of the last state change
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
			delete(l.conns, victim)
		}
		l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
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
	var (
		idle, busy           net.Conn
		idleSince, busySince time.Time
	)
	for c, ci := range l.conns {
		if ci.state == http.StateNew || ci.state == http.StateIdle {
			if idle == nil || ci.since.Before(idleSince) {
				idle, idleSince = c, ci.since
			}
		} else if busy == nil || ci.since.Before(busySince) {
			busy, busySince = c, ci.since
		}
	}
	if idle != nil {
		return idle, "idle"
	}
	return busy, "busy"
}

// connState is the http.Server's ConnState hook: it tracks which
// connections are idle and forgets closed and hijacked ones.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	ci, ok := l.conns[c]
	switch {
	case !ok:
	case st == http.StateClosed || st == http.StateHijacked:
		delete(l.conns, c)
	default:
		ci.state, ci.since = st, time.Now()
	}
	n := len(l.conns)
	l.mu.Unlock()
	l.metrics.conns.Set(float64(n))
}
