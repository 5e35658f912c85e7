package zmtp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// bufConn buffers writes once the handshake is done, and reads through a
// buffered reader (or the guard).
type bufConn struct {
	net.Conn
	r        io.Reader
	w        *bufio.Writer
	buffered atomic.Bool
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufConn) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	if err != nil || b.buffered.Load() {
		return n, err
	}
	return n, b.w.Flush()
}

func (b *bufConn) flush() error { return b.w.Flush() }

// ErrTooLarge is returned by Recv when the peer sends a frame or a message
// past the connection's limits. The connection is unusable after it.
var ErrTooLarge = errors.New("zmtp: message too large")

// guard passes a ZMTP byte stream through and checks each frame's header
// before its body is read: a frame larger than max, a message whose frames
// add up to more than max, or one with more than maxFrames frames stops the
// stream with an error wrapping ErrTooLarge. zmq4 allocates a frame's body
// from its header and keeps a message's frames until the last one, so the
// check has to come first.
type guard struct {
	r         *bufio.Reader
	max       uint64 // bytes of frame bodies per message
	maxFrames int    // frames per message; 0: no limit
	greeting  int
	body      uint64
	pending   [9]byte
	pi, pn    int
	total     uint64 // body bytes of the message so far
	frames    int    // frames of the message so far
	more      bool   // the last frame had the MORE flag
	err       error
	budget    *Budget // nil: reads are not budgeted
	reserved  int64   // what this connection holds of budget
	// raw and msgTimeout, when set, bound the time from a message's first
	// header to its last byte with a read deadline.
	raw        net.Conn
	msgTimeout time.Duration
	timed      bool // the deadline is set
	// onPing, when set, takes each ZMTP PING command (its context) out of
	// the stream, so zmq4 does not answer it from the reading goroutine
	// while another one writes.
	onPing func(context []byte)
}

const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

func (g *guard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if g.err != nil {
		return 0, g.err
	}
	if g.greeting > 0 {
		n, err := g.r.Read(p[:min(len(p), g.greeting)])
		g.greeting -= n
		return n, err
	}
	if g.pi < g.pn {
		n := copy(p, g.pending[g.pi:g.pn])
		g.pi += n
		return n, nil
	}
	if g.body > 0 {
		n, err := g.r.Read(p[:min(uint64(len(p)), g.body)])
		g.body -= uint64(n)
		if g.body == 0 && !g.more {
			g.untime()
		}
		return n, err
	}
	h, err := g.r.Peek(2)
	if err != nil {
		return 0, err
	}
	for g.onPing != nil && !g.more && h[0] == flagCommand {
		// A short command: a PING is taken out and answered by onPing.
		f, err := g.r.Peek(2 + int(h[1]))
		if err != nil {
			return 0, err
		}
		body := f[2:]
		if len(body) < 7 || string(body[:5]) != "\x04PING" {
			break
		}
		g.onPing(append([]byte(nil), body[7:min(len(body), 7+16)]...))
		_, _ = g.r.Discard(len(f))
		if h, err = g.r.Peek(2); err != nil {
			return 0, err
		}
	}
	flag := h[0]
	var size uint64
	if flag&flagLong == 0 {
		size = uint64(h[1])
		g.pn = 2
	} else {
		if h, err = g.r.Peek(9); err != nil {
			return 0, err
		}
		size = binary.BigEndian.Uint64(h[1:9])
		g.pn = 9
	}
	if !g.more {
		g.total, g.frames = 0, 0
		if g.msgTimeout > 0 && !g.timed {
			_ = g.raw.SetReadDeadline(time.Now().Add(g.msgTimeout))
			g.timed = true
		}
	}
	g.more = flag&flagMore != 0
	g.total += min(size, g.max+1)
	g.frames++
	switch {
	case size > g.max:
		g.err = fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, size, g.max)
	case g.total > g.max:
		g.err = fmt.Errorf("%w: over %d bytes after %d frames", ErrTooLarge, g.max, g.frames)
	case g.maxFrames > 0 && g.frames > g.maxFrames:
		g.err = fmt.Errorf("%w: more than %d frames", ErrTooLarge, g.maxFrames)
	}
	if g.err == nil && g.budget != nil && size > 0 {
		if err := g.budget.acquire(int64(size)); err != nil {
			g.err = err
		} else {
			g.reserved += int64(size)
		}
	}
	if g.err != nil {
		return 0, g.err
	}
	if g.budget != nil && size > 0 {
		// zmq4 allocates the whole body at the header: first let the
		// body's first buffer-full arrive, so that a peer gone or stopped
		// after a header costs no allocation.
		if h, err = g.r.Peek(g.pn + int(min(size, uint64(g.r.Size()-g.pn)))); err != nil {
			return 0, err
		} // h is the header again: Peek may have moved the buffer
	}
	if size == 0 && !g.more {
		g.untime()
	}
	copy(g.pending[:], h[:g.pn])
	g.body = size
	_, _ = g.r.Discard(g.pn)
	n := copy(p, g.pending[:g.pn])
	g.pi = n
	return n, nil
}

// untime clears the message deadline once a message is read.
func (g *guard) untime() {
	if g.timed {
		_ = g.raw.SetReadDeadline(time.Time{})
		g.timed = false
	}
}
