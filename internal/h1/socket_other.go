//go:build !linux

package h1

import (
	"context"
	"net"
)

// sockets are Linux's own (socket_linux.go); elsewhere every connection
// is net.Dialer's.
type sockets struct{}

func (*sockets) dial(context.Context, string) (net.Conn, bool, error) { return nil, false, nil }

func (*sockets) closeAll() {}
