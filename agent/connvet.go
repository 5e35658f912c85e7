package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// vettingListener hands the HTTP server only connections that have sent a
// complete request header (or enough bytes that the server must answer
// them, such as 431 past max_header_bytes). Until then a connection waits
// here, in a goroutine blocked in one small read, not in the server with
// its buffers, and it holds no place under max_connections: clients that
// open connections and send nothing, or half a header, wait here until
// read_header_timeout closes them, instead of being shed and reconnecting
// at once, a churn whose accepts queued a probe's connection behind
// thousands of theirs in the kernel's backlog. A /livez probe sends its
// whole request in one packet and reaches the server at once.
//
// At most maxVetting connections wait; past that the one waiting longest is
// closed (vitals_http_connections_shed_total{reason="header"}).
type vettingListener struct {
	net.Listener
	timeout    time.Duration // read_header_timeout
	limit      int           // bytes read before a header's end is given up on
	maxVetting int
	metrics    *frontMetrics

	ready  chan net.Conn
	errs   chan error
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	waiting map[net.Conn]time.Time
}

func newVettingListener(ln net.Listener, timeout time.Duration, maxHeader, maxVetting int, m *frontMetrics) *vettingListener {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	v := &vettingListener{
		Listener: ln, timeout: timeout, limit: maxHeader + 4096, maxVetting: maxVetting, metrics: m,
		ready: make(chan net.Conn), errs: make(chan error), closed: make(chan struct{}),
		waiting: map[net.Conn]time.Time{},
	}
	go v.acceptLoop()
	return v
}

func (v *vettingListener) acceptLoop() {
	for {
		c, err := v.Listener.Accept()
		if err != nil {
			select {
			case v.errs <- err:
			case <-v.closed:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		v.mu.Lock()
		var oldest net.Conn
		if len(v.waiting) >= v.maxVetting {
			var since time.Time
			for w, t := range v.waiting {
				if oldest == nil || t.Before(since) {
					oldest, since = w, t
				}
			}
			delete(v.waiting, oldest)
		}
		v.waiting[c] = time.Now()
		v.mu.Unlock()
		if oldest != nil {
			v.metrics.shed.WithLabelValues("header").Inc()
			_ = oldest.Close()
		}
		go v.vet(c)
	}
}

// vet reads until the end of the request header, then hands the
// connection, with what was read, to Accept.
func (v *vettingListener) vet(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(v.timeout))
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if bytes.Contains(buf, []byte("\r\n\r\n")) || len(buf) >= v.limit {
			break
		}
		if err != nil {
			v.drop(c)
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	v.mu.Lock()
	_, ok := v.waiting[c]
	delete(v.waiting, c)
	v.mu.Unlock()
	if !ok { // closed to make room
		return
	}
	select {
	case v.ready <- &readConn{Conn: c, r: io.MultiReader(bytes.NewReader(buf), c)}:
	case <-v.closed:
		_ = c.Close()
	}
}

func (v *vettingListener) drop(c net.Conn) {
	v.mu.Lock()
	delete(v.waiting, c)
	v.mu.Unlock()
	_ = c.Close()
}

// Accept returns the next connection that has sent a request header.
func (v *vettingListener) Accept() (net.Conn, error) {
	select {
	case c := <-v.ready:
		return c, nil
	case err := <-v.errs:
		return nil, err
	case <-v.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the connections still waiting.
func (v *vettingListener) Close() error {
	var err error
	v.once.Do(func() {
		close(v.closed)
		err = v.Listener.Close()
		v.mu.Lock()
		for c := range v.waiting {
			_ = c.Close()
		}
		v.waiting = map[net.Conn]time.Time{}
		v.mu.Unlock()
	})
	return err
}

// readConn is a connection whose first bytes were already read.
type readConn struct {
	net.Conn
	r io.Reader
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite lets the server half-close a TCP connection, as it does on
// a bare one.
func (c *readConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
