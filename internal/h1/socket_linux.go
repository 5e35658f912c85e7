//go:build linux

package h1

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// On Linux the transport dials a numeric address with sockets of its own,
// not net.Dialer's, for two costs that a check opening a connection per
// probe pays at every probe:
//
//   - The runtime's monitor thread. A system call made through the
//     runtime's system-call entry while the process's P is idle wakes the
//     monitor (sysmon) from its sleep and sets it back to 20 µs naps
//     (golang/go#18236). An agent checking a hundred servers a second goes
//     idle between answers some thirty times a second, and each first
//     system call after it (the connect, the read, the close) woke the
//     monitor: its naps were 8 % of the agent's CPU. Every call this
//     socket makes on a check's path is a raw one (syscall.RawSyscall):
//     the socket is non-blocking, so no call waits in the kernel, and the
//     waiting is the runtime poller's, as for net's own sockets.
//   - The socket itself. net.Dialer makes a socket a connection (seven
//     system calls with the registration in the poller and the addresses),
//     and the close tears it down again. A connection whose server said
//     Connection: close is ended with a reset, as net's are (conn.reset),
//     but by dissolving the association (connect to AF_UNSPEC, which
//     connect(2) documents for TCP): the socket, still in the poller and
//     with its options set, is kept as a spare for the next dial, and the
//     kernel gives its port back at once. A connection that ends any other
//     way is closed as before: with a FIN when it was open, at once when a
//     deadline or a cancel left it in an unknown state.
//
// Host names, addresses with a zone and a Transport with a Dialer of its
// own dial with net.Dialer.

// maxSpares bounds the spare sockets of each address family: an idle
// socket is a descriptor and a few hundred bytes of kernel memory, and the
// spares never outnumber the connections a transport had open at once.
const maxSpares = 64

// sockets are the transport's spare sockets, by family (IPv4, IPv6).
type sockets struct {
	mu    sync.Mutex
	spare [2][]*sock
	made  int // sockets made since the transport's start, for tests
}

// dial connects to key, a numeric host:port, and reports false (and
// dials nothing) for any other key.
func (ss *sockets) dial(ctx context.Context, key string) (net.Conn, bool, error) {
	ap, err := netip.ParseAddrPort(key)
	if err != nil || ap.Addr().Zone() != "" {
		return nil, false, nil
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	family := 0
	if ap.Addr().Is6() {
		family = 1
	}
	s := ss.get(family)
	if s == nil {
		if s, err = ss.make(family); err != nil {
			return nil, true, dialError(ap, err)
		}
	}
	s.peer(ap)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultDialer.Timeout)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, s.abort)
	s.cerr = 0
	err = s.rc.Write(s.connectF)
	intact := stop() // no abort ran: the socket's deadline is still unset
	if err == nil && s.cerr != 0 {
		err = os.NewSyscallError("connect", s.cerr)
	}
	switch {
	case err == nil && intact:
		return s, true, nil
	case err == nil:
		// Connected as the context ended: the abort has set, or is
		// setting, a deadline in the past on it.
		s.f.Close()
		err = context.Cause(ctx)
	default:
		// Refused, unreachable: the socket is not connected, and a spare
		// again unless an abort touched it.
		s.reset(intact)
		err = contextError(ctx, err)
	}
	return nil, true, dialError(ap, err)
}

// dialError is a failed dial to ap as net.Dialer reports it.
func dialError(ap netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
}

// get returns a spare socket of family, or nil.
func (ss *sockets) get(family int) *sock {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list := ss.spare[family]
	if len(list) == 0 {
		return nil
	}
	s := list[len(list)-1]
	list[len(list)-1] = nil
	ss.spare[family] = list[:len(list)-1]
	return s
}

// put keeps s, not connected, for the next dial, or closes it when as
// many are kept as may be.
func (ss *sockets) put(s *sock) {
	ss.mu.Lock()
	if list := ss.spare[s.family]; len(list) < maxSpares {
		ss.spare[s.family] = append(list, s)
		ss.mu.Unlock()
		return
	}
	ss.mu.Unlock()
	s.f.Close()
}

// closeAll closes the spare sockets.
func (ss *sockets) closeAll() {
	ss.mu.Lock()
	spare := ss.spare
	ss.spare = [2][]*sock{}
	ss.mu.Unlock()
	for _, list := range spare {
		for _, s := range list {
			s.f.Close()
		}
	}
}

// make makes a non-blocking TCP socket of family, with TCP_NODELAY set as
// net sets it, registered in the runtime's poller.
func (ss *sockets) make(family int) (*sock, error) {
	domain := syscall.AF_INET
	if family == 1 {
		domain = syscall.AF_INET6
	}
	fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(domain), syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if e != 0 {
		return nil, os.NewSyscallError("socket", e)
	}
	one := int32(1)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0); e != 0 {
		syscall.Close(int(fd))
		return nil, os.NewSyscallError("setsockopt", e)
	}
	// NewFile registers a non-blocking descriptor in the poller; a
	// deadline can be set only on one it registered.
	f := os.NewFile(fd, "tcp")
	if err := f.SetDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &sock{ss: ss, f: f, rc: rc, family: family}
	s.connectF, s.readF, s.writeF, s.dissolveF = s.connect, s.read, s.write, s.dissolve
	ss.mu.Lock()
	ss.made++
	ss.mu.Unlock()
	return s, nil
}

// sock is a TCP connection on a socket of the transport's: a net.Conn
// whose reads, writes and connect are raw system calls on a non-blocking
// descriptor, with the poller's waits between them.
type sock struct {
	ss     *sockets
	f      *os.File
	rc     syscall.RawConn
	family int
	addr   netip.AddrPort
	closed atomic.Bool                       // by Close, for its errors
	sa     [syscall.SizeofSockaddrInet6]byte // addr as the kernel reads it
	salen  uintptr

	// The raw calls' arguments and results, and the calls bound once.
	cerr                    syscall.Errno
	rp, wp                  []byte
	rn, wn                  int
	rerr, werr              syscall.Errno
	connectF, readF, writeF func(fd uintptr) bool
	dissolveF               func(fd uintptr)
}

// peer sets the address the socket connects to.
func (s *sock) peer(ap netip.AddrPort) {
	s.addr = ap
	s.sa = [len(s.sa)]byte{}
	// The port in network byte order, at the same place in both.
	s.sa[2], s.sa[3] = byte(ap.Port()>>8), byte(ap.Port())
	if s.family == 0 {
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&s.sa))
		sa.Family = syscall.AF_INET
		sa.Addr = ap.Addr().As4()
		s.salen = syscall.SizeofSockaddrInet4
		return
	}
	sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&s.sa))
	sa.Family = syscall.AF_INET6
	sa.Addr = ap.Addr().As16()
	s.salen = syscall.SizeofSockaddrInet6
}

// connect starts the connection, or, called again once the socket is
// writable, finds how it went: 0 once connected (EISCONN after that),
// EALREADY while it is under way, the error when it failed.
func (s *sock) connect(fd uintptr) bool {
	_, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&s.sa)), s.salen)
	switch e {
	case 0, syscall.EISCONN:
		return true
	case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
		return false
	}
	s.cerr = e
	return true
}

func (s *sock) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.rp))), uintptr(len(s.rp)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rerr = e
		return true
	}
}

func (s *sock) write(fd uintptr) bool {
	for s.wn < len(s.wp) {
		p := s.wp[s.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			s.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = e
			return true
		}
	}
	return true
}

// dissolve ends the connection with a reset and leaves the socket
// unconnected, ready to connect again; the error the reset left on it is
// read off, so that the next connection does not find it.
func (s *sock) dissolve(fd uintptr) {
	var sa syscall.RawSockaddr // AF_UNSPEC
	syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	var soerr int32
	size := uint32(4)
	syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_ERROR, uintptr(unsafe.Pointer(&soerr)), uintptr(unsafe.Pointer(&size)), 0)
}

func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.readF)
	n, errno := s.rn, s.rerr
	s.rp = nil
	if err := s.ioError("read", err, errno); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (s *sock) Write(p []byte) (int, error) {
	s.wp, s.wn, s.werr = p, 0, 0
	err := s.rc.Write(s.writeF)
	n, errno := s.wn, s.werr
	s.wp = nil
	return n, s.ioError("write", err, errno)
}

// ioError is the error of a read or write: the poller's (a deadline, a
// close) or the system call's.
func (s *sock) ioError(op string, err error, errno syscall.Errno) error {
	if err == nil && errno != 0 {
		err = os.NewSyscallError(op, errno)
	}
	if err != nil {
		return s.opError(op, err)
	}
	return nil
}

// Close closes the connection: with a FIN when it is open.
func (s *sock) Close() error {
	s.closed.Store(true)
	if err := s.f.Close(); err != nil {
		return s.opError("close", err)
	}
	return nil
}

// reset ends the connection with a reset; the socket becomes a spare when
// spare is set (nothing but this connection's owner can still touch it:
// no abort of a cancel or deadline has run or is running), else it is
// closed.
func (s *sock) reset(spare bool) {
	if err := s.rc.Control(s.dissolveF); err != nil || !spare {
		s.f.Close()
		return
	}
	s.ss.put(s)
}

// abort makes the connection's waits and system calls fail now.
func (s *sock) abort() { s.f.SetDeadline(aLongTimeAgo) }

func (s *sock) SyscallConn() (syscall.RawConn, error) { return s.rc, nil }

func (s *sock) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.addr) }

func (s *sock) LocalAddr() net.Addr {
	var sa syscall.Sockaddr
	s.rc.Control(func(fd uintptr) { sa, _ = syscall.Getsockname(int(fd)) })
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}

func (s *sock) SetDeadline(t time.Time) error      { return s.f.SetDeadline(t) }
func (s *sock) SetReadDeadline(t time.Time) error  { return s.f.SetReadDeadline(t) }
func (s *sock) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }

// opError is err as net's connections return it: a closed socket's is
// net.ErrClosed, where an os.File's calls say "use of closed file".
func (s *sock) opError(op string, err error) error {
	if s.closed.Load() {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: s.RemoteAddr(), Err: err}
}
