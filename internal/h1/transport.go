// Package h1 is the HTTP/1.1 transport of the health checks' default
// client: plain-HTTP requests sent and answered in the goroutine that
// sends them, over connections kept between checks.
//
// net/http's Transport gives every kept connection a read and a write
// goroutine and hands each request between them and its caller by
// channels: a check of a server every second paid three goroutines' wake-ups
// and their stacks (8 KiB a connection, kept while it idles) for a request
// of a few hundred bytes. Here the caller writes the request, reads the
// answer and, when the body has been read to its end, puts the connection
// back; an idle connection is its socket alone (the buffers are the
// transport's, held only while a request is on a connection), and nothing
// runs for it. The answer is parsed by net/http itself (ReadResponse), and
// the request written by it (Request.Write) but for a plain GET, which
// request.go writes byte for byte as Request.Write does, without its
// allocations: what goes on the wire is what net/http's client sends. The
// trace context of a request's context goes with it when Propagator is
// set, without the copy of the request a RoundTripper around this one
// would need to add it.
//
// Anything that is not plain HTTP (https, or a transport option this one
// does not have) goes to the fallback transport, net/http's: TLS and
// HTTP/2 stay the standard library's.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"
)

// Transport is an http.RoundTripper for plain HTTP/1.1. The zero value is
// not usable; fill in Fallback.
type Transport struct {
	// Fallback sends every request that is not plain http.
	Fallback http.RoundTripper
	// MaxIdleConnsPerHost bounds the idle connections kept per host:port;
	// past it a connection is closed when its answer has been read. 0 keeps
	// none.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes a connection idle for longer; 0 never does.
	IdleConnTimeout time.Duration
	// BufferSize is the size of the read and write buffers a request
	// uses (4 KiB when 0). They are the transport's, not the
	// connection's: a connection has them only while a request is on it.
	// A body longer than the read buffer is read past it into the
	// reader's slice.
	BufferSize int
	// Dialer dials the connections; nil is defaultDialer.
	Dialer *net.Dialer
	// Propagator, when set, sends the trace context of each request's
	// context (what it injects) with the request, unless its header has
	// a traceparent already: written after the header, without a copy of
	// the request (a copy with a header of its own where Request.Write
	// writes it, and for the fallback).
	Propagator propagation.TextMapPropagator

	mu   sync.Mutex
	idle map[string][]*conn // by host:port, the most recently used last

	sockets sockets // on Linux, the spare sockets of connections ended with a reset

	readers, writers sync.Pool
}

// defaultDialer dials within the request's context and at most 30 s,
// without TCP keep-alive probes: a kept connection is
// looked at before it is used again (open) and closed after
// IdleConnTimeout, so the kernel's probes of an idle one would find
// nothing the next request does not, and setting them up is three system
// calls a connection.
var defaultDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}

// conn is a kept connection.
type conn struct {
	t      *Transport
	key    string
	nc     net.Conn
	br     *bufio.Reader // while a request is on the connection
	idleAt time.Time
	timer  *time.Timer // closes the connection once idle too long
	reused bool

	raw   syscall.RawConn // nil when the connection has none
	alive bool            // what the last peek found
	buf   [1]byte         // the peek's
	peekF func(fd uintptr) bool
	abort func() // makes the connection's reads and writes fail now
}

// RoundTrip sends req and returns its answer. The answer's body must be
// read to its end (or closed) for its connection to be used again;
// closing it early closes the connection.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return t.Fallback.RoundTrip(withTraceContext(req, t.Propagator))
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	key := hostPort(req)
	for attempt := 0; ; attempt++ {
		c, err := t.get(ctx, key)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := c.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		// A kept connection the server closed while it idled fails before
		// any answer: send once more on a new one when the request may be
		// sent twice, as net/http does.
		if !c.reused || attempt > 0 || !errors.Is(err, errNoAnswer) || !replayable(req) {
			closeBody(req)
			return nil, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
	}
}

// errNoAnswer is wrapped by the error of a request whose connection ended
// before the first byte of an answer.
var errNoAnswer = errors.New("connection closed before an answer")

func (c *conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	stop := c.watch(ctx)
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		return nil, contextError(ctx, err)
	}
	if err := c.t.write(c.nc, req); err != nil {
		// Nothing was answered: a kept connection the server had closed
		// fails here too, when its reset came back before this write.
		return fail(fmt.Errorf("write request: %w: %w", errNoAnswer, err))
	}
	c.br = c.t.reader(c.nc)
	var resp *http.Response
	for {
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				err = fmt.Errorf("%w: %w", errNoAnswer, err)
			}
			return fail(fmt.Errorf("read response: %w", err))
		}
		// An informational answer (100 Continue, 103 Early Hints) comes
		// before the real one.
		if r.StatusCode >= 100 && r.StatusCode < 200 && r.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		resp = r
		break
	}
	reusable := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	resp.Body = &body{ctx: ctx, c: c, rc: resp.Body, stop: stop, reusable: reusable, serverCloses: resp.Close}
	return resp, nil
}

// watch makes the connection's reads and writes fail once ctx is done,
// at its deadline or its cancel, and returns the function that stops
// that, which reports false when ctx ended first.
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return never
	}
	// The context's own timer ends it at its deadline; the connection
	// needs no deadline of its own (setting and clearing one is a timer
	// change each in the runtime's poller).
	return context.AfterFunc(ctx, c.abort)
}

func never() bool { return true }

var aLongTimeAgo = time.Unix(1, 0)

// contextError is err of a request in ctx, as the context's error when the
// context ended it.
func contextError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// body is an answer's body: at its end the connection goes back to the
// transport's idle ones.
type body struct {
	ctx      context.Context
	c        *conn
	rc       io.ReadCloser
	stop     func() bool
	reusable bool
	// serverCloses: the answer said Connection: close, so the server
	// closes its end once it has sent it.
	serverCloses bool
	done         bool // the connection is back or closed
	atEnd        bool
}

var errClosed = errors.New("h1: read on a closed response body")

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		if b.atEnd {
			return 0, io.EOF
		}
		return 0, errClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
		err = contextError(b.ctx, err)
	}
	return n, err
}

// Close closes the connection unless the body was read to its end: what
// is left of the body is not read.
func (b *body) Close() error {
	if !b.done {
		b.finish(b.rc == http.NoBody)
	}
	return nil
}

func (b *body) finish(atEnd bool) {
	b.done, b.atEnd = true, atEnd
	// stop reports false when the context's watch already ran: the
	// connection's deadline is in the past.
	c := b.c
	intact := b.stop()
	if intact && atEnd && b.reusable && c.br.Buffered() == 0 {
		c.t.readers.Put(c.br)
		c.br = nil
		c.t.put(c)
		return
	}
	if atEnd && b.serverCloses {
		c.reset(intact)
		return
	}
	c.close()
}

// resetter is a connection of the transport's own sockets (socket_linux.go),
// which ends itself with a reset and keeps its socket when spare is set.
type resetter interface{ reset(spare bool) }

// reset closes a connection whose server said it closes it (Connection:
// close) and has sent all of its answer, with a reset rather than a FIN,
// as HAProxy ends its health checks' connections. The server is done with
// the connection (a read it still makes finds the reset where it would
// have found the end), and its kernel drops it at once instead of keeping
// it in TIME_WAIT for a minute: a check a second of a server that closes
// every connection would otherwise leave sixty there, and on loopback,
// where the closing side runs both ends' TCP work, the agent would pay
// for the FIN, its ACK and the TIME_WAIT entry. A connection the server
// would keep open is closed with a FIN (close). intact says that no abort
// of the request's context has touched the connection.
func (c *conn) reset(intact bool) {
	switch nc := c.nc.(type) {
	case resetter:
		nc.reset(intact)
		c.release()
		return
	case *net.TCPConn:
		nc.SetLinger(0)
	}
	c.close()
}

// close closes the connection and lets its read buffer go.
func (c *conn) close() {
	c.nc.Close()
	c.release()
}

// release lets the connection's read buffer go.
func (c *conn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		c.t.readers.Put(c.br)
		c.br = nil
	}
}

// WritesTraceContext reports whether the transport sends the trace
// context of a request's context itself (Propagator is set).
func (t *Transport) WritesTraceContext() bool { return t.Propagator != nil }

// write writes req to nc through one of the transport's write buffers.
func (t *Transport) write(nc net.Conn, req *http.Request) error {
	bw, _ := t.writers.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(nc, t.bufferSize())
	} else {
		bw.Reset(nc)
	}
	var err error
	if !writeGet(bw, req, t.Propagator) {
		err = withTraceContext(req, t.Propagator).Write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	t.writers.Put(bw)
	return err
}

// reader returns one of the transport's read buffers, reading from nc.
func (t *Transport) reader(nc net.Conn) *bufio.Reader {
	br, _ := t.readers.Get().(*bufio.Reader)
	if br == nil {
		return bufio.NewReaderSize(nc, t.bufferSize())
	}
	br.Reset(nc)
	return br
}

func (t *Transport) bufferSize() int {
	if t.BufferSize <= 0 {
		return 4 << 10
	}
	return t.BufferSize
}

// get returns a kept connection to key that is still open, or dials one.
func (t *Transport) get(ctx context.Context, key string) (*conn, error) {
	now := time.Now()
	t.mu.Lock()
	for {
		list := t.idle[key]
		if len(list) == 0 {
			break
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(t.idle, key)
		} else {
			t.idle[key] = list[:len(list)-1]
		}
		if t.IdleConnTimeout > 0 && now.Sub(c.idleAt) > t.IdleConnTimeout {
			c.nc.Close()
			continue
		}
		t.mu.Unlock()
		if c.open() {
			c.reused = true
			return c, nil
		}
		c.close()
		t.mu.Lock()
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, key)
	if err != nil {
		return nil, err
	}
	c := &conn{t: t, key: key, nc: nc}
	c.abort = func() { c.nc.SetDeadline(aLongTimeAgo) }
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw, c.peekF = raw, c.peek
		}
	}
	return c, nil
}

// dial opens a connection to key: on the transport's own sockets when it
// has them (Linux, a numeric address, no Dialer set), else with the
// Dialer.
func (t *Transport) dial(ctx context.Context, key string) (net.Conn, error) {
	d := t.Dialer
	if d == nil {
		if nc, ok, err := t.sockets.dial(ctx, key); ok {
			return nc, err
		}
		d = defaultDialer
	}
	return d.DialContext(ctx, "tcp", key)
}

// open reports whether the server has not closed the idle connection: a
// peek at the socket that does not wait finds nothing to read. A server
// that closed it (its keep-alive timeout: five seconds for uvicorn, which
// vLLM, SGLang and TGI's router run on) has sent its FIN, which reads as
// zero bytes; bytes the server sent unasked make the connection unusable
// too.
func (c *conn) open() bool {
	if c.raw == nil {
		return true
	}
	c.alive = false
	return c.raw.Read(c.peekF) == nil && c.alive
}

// put keeps c for the next request to its host, or closes it when the
// host has as many kept as it may.
func (t *Transport) put(c *conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	list := t.idle[c.key]
	if len(list) >= t.MaxIdleConnsPerHost {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.key] = append(list, c)
	if t.IdleConnTimeout > 0 {
		if c.timer == nil {
			c.timer = time.AfterFunc(t.IdleConnTimeout, c.expire)
		} else {
			c.timer.Reset(t.IdleConnTimeout)
		}
	}
	t.mu.Unlock()
}

// expire closes c if it is still idle and has been for IdleConnTimeout.
func (c *conn) expire() {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(c.idleAt) < t.IdleConnTimeout {
		return // used and put back since; its timer was reset
	}
	list := t.idle[c.key]
	for i, k := range list {
		if k == c {
			t.idle[c.key] = append(list[:i], list[i+1:]...)
			if len(t.idle[c.key]) == 0 {
				delete(t.idle, c.key)
			}
			c.nc.Close()
			return
		}
	}
}

// CloseIdleConnections closes every kept connection and spare socket, and
// the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			if c.timer != nil {
				c.timer.Stop()
			}
			c.nc.Close()
		}
	}
	t.sockets.closeAll()
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// hostPort is the address a request is sent to: its URL's host with the
// port, 80 when the URL has none.
func hostPort(req *http.Request) string {
	host := req.URL.Host
	if req.URL.Port() == "" {
		return net.JoinHostPort(req.URL.Hostname(), "80")
	}
	return host
}

// replayable reports whether req may be sent again: a method without side
// effects, and a body that can be had again, as net/http decides.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
