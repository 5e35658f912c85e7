package zmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/go-zeromq/zmq4/security/plain"
	"golang.org/x/sync/semaphore"
)

// Socket types used by the bus.
const (
	Pub = zmq4.Pub
	Sub = zmq4.Sub
)

// greetingLen is the size of the ZMTP 3.0 greeting.
const greetingLen = 64

// Buffer sizes: a connection's data flows one way, from the PUB side to
// the SUB side (the other way go only subscriptions), so it buffers that
// way with bufSize and the other with smallBuf.
const (
	bufSize  = 64 << 10
	smallBuf = 4 << 10
)

// Endpoint splits a ZeroMQ endpoint (tcp://host:port, ipc:///path) into a
// Go network and address.
func Endpoint(ep string) (network, addr string, err error) {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("endpoint %q: want tcp://host:port or ipc:///path", ep)
	}
	switch scheme {
	case "tcp":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("endpoint %q: %w", ep, err)
		}
		return "tcp", rest, nil
	case "ipc":
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("endpoint %q: unsupported transport %q, want tcp or ipc", ep, scheme)
}

// Listen binds a ZeroMQ endpoint.
func Listen(ep string) (net.Listener, error) {
	network, addr, err := Endpoint(ep)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", ep, err)
	}
	return l, nil
}

// Credentials are ZeroMQ PLAIN credentials; the zero value means NULL
// security.
type Credentials struct {
	Username string
	Password string
}

// IsZero reports whether no credentials are set.
func (c Credentials) IsZero() bool { return c.Username == "" && c.Password == "" }

// Conn is one ZMTP connection. Send and Flush may be called from one
// goroutine while Recv is called from another.
type Conn struct {
	zc  *zmq4.Conn
	raw net.Conn
	rw  *bufConn
	wmu sync.Mutex
	// activity counts the messages received and the flushes written.
	activity atomic.Uint64

	// User is the PLAIN user name the peer authenticated as, on the server
	// side; "" with NULL security.
	User string
}

// Dial connects to ep as a socket of type typ (Pub or Sub). A zero
// Credentials means NULL security. ctx bounds the connection and the
// handshake.
func Dial(ctx context.Context, ep string, typ zmq4.SocketType, cred Credentials) (*Conn, error) {
	network, addr, err := Endpoint(ep)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", ep, err)
	}
	c, err := Client(ctx, raw, typ, cred)
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", ep, err)
	}
	return c, nil
}

// Client performs the client side of the handshake on a connection made
// by the caller. ctx bounds the handshake; raw is closed on failure.
func Client(ctx context.Context, raw net.Conn, typ zmq4.SocketType, cred Credentials) (*Conn, error) {
	sec := null.Security()
	if !cred.IsZero() {
		sec = plain.Security(cred.Username, cred.Password)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	return open(raw, sec, typ, false, deadline, 0, 0)
}

// ServerOptions configures the broker side of a connection.
type ServerOptions struct {
	// Authenticate, when set, turns on PLAIN security: it reports whether
	// a user name and password are accepted.
	Authenticate func(user, pass string) bool
	// MaxMessage bounds the bytes of one message's frames, checked at each
	// frame's header before its body is read; 0 means no limit. Past it,
	// Recv fails with ErrTooLarge.
	MaxMessage int
	// MaxFrames bounds the frames of one message (with MaxMessage set);
	// 0 means no limit.
	MaxFrames int
	// HandshakeTimeout bounds the greeting and security handshake.
	HandshakeTimeout time.Duration
	// Budget, when set (with MaxMessage), is shared with other
	// connections: the bytes of the messages being read, reserved at
	// each frame's header before zmq4 allocates its body.
	Budget *Budget
	// MessageTimeout, when set (with MaxMessage), bounds the time from a
	// message's first frame header to its last byte; past it Recv fails
	// with a timeout.
	MessageTimeout time.Duration
}

// Budget bounds the bytes of the messages that a set of connections is
// reading at once. A frame that does not fit waits for others to finish,
// up to the budget's wait; then Recv fails with ErrBusy.
type Budget struct {
	sem  *semaphore.Weighted
	wait time.Duration
}

// NewBudget returns a budget of bytes, with frames waiting up to wait.
func NewBudget(bytes int64, wait time.Duration) *Budget {
	return &Budget{sem: semaphore.NewWeighted(bytes), wait: wait}
}

// ErrBusy is returned by Recv when a frame found no room in the read
// budget within its wait. The connection is unusable after it.
var ErrBusy = errors.New("zmtp: read budget exhausted")

func (b *Budget) acquire(n int64) error {
	if b.sem.TryAcquire(n) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		return fmt.Errorf("%w: no room for a frame of %d bytes within %s", ErrBusy, n, b.wait)
	}
	return nil
}

// Server performs the server side of the handshake on an accepted
// connection, as a socket of type typ. It closes raw on failure.
func Server(raw net.Conn, typ zmq4.SocketType, o ServerOptions) (*Conn, error) {
	var sec zmq4.Security = null.Security()
	var ps *plainServer
	if o.Authenticate != nil {
		ps = &plainServer{auth: o.Authenticate}
		sec = ps
	}
	timeout := o.HandshakeTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c, err := open(raw, sec, typ, true, time.Now().Add(timeout), o.MaxMessage, o.MaxFrames)
	if err != nil {
		return nil, err
	}
	if g, ok := c.rw.r.(*guard); ok { // from now on: the handshake has its own deadline
		g.budget = o.Budget
		g.raw, g.msgTimeout = raw, o.MessageTimeout
	}
	if ps != nil {
		c.User = ps.user
	}
	return c, nil
}

func open(raw net.Conn, sec zmq4.Security, typ zmq4.SocketType, server bool, deadline time.Time, maxMessage, maxFrames int) (*Conn, error) {
	// The handshake runs on small buffers: a connection that never gets
	// past it (a flood of them, or a backlog closing at once) costs little.
	rw := &bufConn{Conn: raw, w: bufio.NewWriterSize(raw, smallBuf)}
	br := bufio.NewReaderSize(raw, smallBuf)
	rw.r = br
	var g *guard
	if maxMessage > 0 {
		g = &guard{r: br, max: uint64(maxMessage), maxFrames: maxFrames, greeting: greetingLen}
		rw.r = g
	}
	_ = raw.SetDeadline(deadline)
	zc, err := zmq4.Open(rw, sec, typ, zmq4.SocketIdentity(nil), server, nil)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	// Then the way the data flows gets its full buffer: writes on the PUB
	// side (nothing is buffered yet: the handshake flushed every write),
	// reads on the SUB side (after what the small buffer already holds).
	if typ == Pub {
		rw.w = bufio.NewWriterSize(raw, bufSize)
	} else {
		br = bufio.NewReaderSize(&drain{buf: br, raw: raw}, bufSize)
		rw.r = br
		if g != nil {
			g.r = br
			rw.r = g
		}
	}
	rw.buffered.Store(true)
	c := &Conn{zc: zc, raw: raw, rw: rw}
	if g != nil {
		g.onPing = c.pong // from now on: the handshake is done
	}
	return c, nil
}

// drain reads what buf still holds, then from raw.
type drain struct {
	buf *bufio.Reader
	raw net.Conn
}

func (d *drain) Read(p []byte) (int, error) {
	if d.buf != nil {
		if d.buf.Buffered() > 0 {
			return d.buf.Read(p)
		}
		d.buf = nil
	}
	return d.raw.Read(p)
}

// Send writes a multi-frame message into the connection's buffer. Call
// Flush to push buffered messages to the peer.
func (c *Conn) Send(frames ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.zc.SendMsg(zmq4.NewMsgFrom(frames...))
}

// SendFlush sends a message and flushes.
func (c *Conn) SendFlush(frames ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.zc.SendMsg(zmq4.NewMsgFrom(frames...)); err != nil {
		return err
	}
	return c.flush()
}

// Flush writes buffered messages to the peer.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flush()
}

func (c *Conn) flush() error {
	if c.rw.w.Buffered() == 0 {
		return nil
	}
	if err := c.rw.flush(); err != nil {
		return err
	}
	c.activity.Add(1)
	return nil
}

// Activity returns a count that grows each time the peer sends a message
// (a command such as a heartbeat included) or takes a flush of written
// data: two equal readings mean nothing moved between them.
func (c *Conn) Activity() uint64 { return c.activity.Load() }

// SetWriteDeadline bounds the next writes.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Recv reads the next message. Commands are skipped (PING is answered by
// zmq4). A frame or message past the server's limits fails with an error
// wrapping ErrTooLarge before its body is read.
func (c *Conn) Recv() ([][]byte, error) {
	for {
		c.Release() // the caller is done with the previous message
		msg, err := c.zc.RecvMsg()
		if err != nil {
			return nil, err
		}
		c.activity.Add(1)
		if msg.Type == zmq4.CmdMsg {
			continue
		}
		return msg.Frames, nil
	}
}

// Release gives back what the last message read holds of the read budget.
// Recv calls it; call it once more from the goroutine that calls Recv
// when done with the connection.
func (c *Conn) Release() {
	if g, ok := c.rw.r.(*guard); ok && g.reserved > 0 {
		g.budget.sem.Release(g.reserved)
		g.reserved = 0
	}
}

// Ping sends a ZMTP 3.1 heartbeat PING (no TTL, no context) and flushes.
// The broker counts it as activity and answers with a PONG.
func (c *Conn) Ping() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rw.w.Write([]byte{flagCommand, 7, 4, 'P', 'I', 'N', 'G', 0, 0}); err != nil {
		return err
	}
	return c.flush()
}

// pong answers a peer's PING with its context, under the write lock, and
// counts as activity.
func (c *Conn) pong(context []byte) {
	c.activity.Add(1)
	frame := append([]byte{flagCommand, byte(5 + len(context)), 4, 'P', 'O', 'N', 'G'}, context...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rw.w.Write(frame); err == nil {
		_ = c.rw.flush()
	}
}

// Limit bounds what Recv accepts from now on, as ServerOptions.MaxMessage
// and MaxFrames do for the server side. Call it before the first Recv.
func (c *Conn) Limit(maxMessage, maxFrames int) {
	if g, ok := c.rw.r.(*guard); ok {
		g.max, g.maxFrames = uint64(maxMessage), maxFrames
		return
	}
	if br, ok := c.rw.r.(*bufio.Reader); ok {
		c.rw.r = &guard{r: br, max: uint64(maxMessage), maxFrames: maxFrames, onPing: c.pong}
	}
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Close closes the connection; blocked Send, Flush and Recv calls return.
func (c *Conn) Close() error { return c.raw.Close() }
