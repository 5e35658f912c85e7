//go:build unix && !linux

package h1

import (
	"errors"
	"syscall"
)

// peek is open's look at the socket: MSG_PEEK leaves what it finds for
// the reads, MSG_DONTWAIT returns at once. Nothing to read (EAGAIN) is an
// open connection; zero bytes (the server's FIN), bytes or an error are
// not.
func (c *conn) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), c.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
	return true
}
