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
// requests) to make room, and refuses the new one only when every
// connection is busy in a handler. So idle and slow clients cannot hold
// the front: a probe of /livez gets in however many of them there are,
// and the timeouts of http.Server end the rest.
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
		var victim net.Conn
		if len(l.conns) >= l.max {
			victim = l.idlestLocked()
			if victim == nil {
				l.mu.Unlock()
				l.metrics.shed.WithLabelValues("refused").Inc()
				_ = c.Close()
				continue
			}
			delete(l.conns, victim)
		}
		l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
		n := len(l.conns)
		l.mu.Unlock()
		if victim != nil {
			l.metrics.shed.WithLabelValues("idle").Inc()
			_ = victim.Close()
		}
		l.metrics.conns.Set(float64(n))
		return c, nil
	}
}

// idlestLocked returns the connection idle longest, or nil when every one
// is serving a request.
func (l *connLimiter) idlestLocked() net.Conn {
	var (
		best  net.Conn
		since time.Time
	)
	for c, ci := range l.conns {
		if ci.state != http.StateNew && ci.state != http.StateIdle {
			continue
		}
		if best == nil || ci.since.Before(since) {
			best, since = c, ci.since
		}
	}
	return best
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
