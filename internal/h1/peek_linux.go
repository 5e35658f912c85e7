//go:build linux

package h1

import (
	"syscall"
	"unsafe"
)

// peek is open's look at the socket: MSG_PEEK leaves what it finds for
// the reads, MSG_DONTWAIT returns at once, so the call is a raw one (see
// socket_linux.go). Nothing to read (EAGAIN) is an open connection; zero
// bytes (the server's FIN), bytes or an error are not.
func (c *conn) peek(fd uintptr) bool {
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	c.alive = e == syscall.EAGAIN
	return true
}
