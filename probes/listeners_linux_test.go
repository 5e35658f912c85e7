package probes

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/procfs"
)

// The kernel's answer over sock_diag is the listeners /proc/net/tcp and
// tcp6 list, IPv4 and IPv6, and nothing for a port nobody listens on or
// one only connected to.
func TestListenerInodesOverNetlink(t *testing.T) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ln6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err == nil {
		defer ln6.Close() // the same port on IPv6: two listeners
	}
	// A connection from and to the listener: established sockets are not
	// listeners.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	all, err := netlinkListeners()
	if err != nil {
		t.Skipf("sock_diag refused here (ListenerInodes reads /proc): %v", err)
	}
	got := all[port]
	slices.Sort(got)
	want, err := ListenerInodes(&fs, port)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !slices.Equal(got, want) {
		t.Fatalf("sock_diag: listeners on %d = %v, /proc says %v", port, got, want)
	}
	if viaDefault, err := ListenerInodes(nil, port); err != nil || !slices.Equal(viaDefault, want) {
		t.Fatalf("ListenerInodes(nil) = %v, %v, want %v", viaDefault, err, want)
	}

	cport := c.LocalAddr().(*net.TCPAddr).Port
	if got := all[cport]; len(got) != 0 {
		t.Fatalf("port %d, only connected from: %v, want no listener", cport, got)
	}
	ln.Close()
	if ln6 != nil {
		ln6.Close()
	}
	if inodes, err := ListenerInodes(nil, port); !errors.Is(err, ErrNoListener) {
		t.Fatalf("after close: %v, %v, want ErrNoListener", inodes, err)
	}
}

// BenchmarkListenerInodes: the listeners on a port from the kernel over
// sock_diag, and from /proc/net/tcp and tcp6, on this host as it is.
func BenchmarkListenerInodes(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		b.Skip(err)
	}
	b.Run("netlink", func(b *testing.B) {
		for b.Loop() {
			if _, err := netlinkListeners(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proc", func(b *testing.B) {
		for b.Loop() {
			if _, err := ListenerInodes(&fs, port); err != nil {
				b.Fatal(err)
			}
		}
	})
}
