//go:build linux

package h1

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

const closingAnswer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

// TestSparesTheSocketOfAResetConnection: a server that closes every
// connection gets a new connection for every request, all on one socket of
// the transport's, dissolved with a reset after each answer and connected
// again.
func TestSparesTheSocketOfAResetConnection(t *testing.T) {
	s := newRawServer(t, closingAnswer, true)
	other := newRawServer(t, closingAnswer, true)
	tr := newTransport()
	c := &http.Client{Transport: tr}
	for i := range 20 {
		url := s.url()
		if i%2 == 1 {
			url = other.url()
		}
		if got := get(t, c, url); got != "ok" {
			t.Fatalf("request %d: body %q", i, got)
		}
	}
	if a, b := s.accepted.Load(), other.accepted.Load(); a != 10 || b != 10 {
		t.Fatalf("connections accepted: %d and %d, want 10 each", a, b)
	}
	if spare, made := tr.sockets.count(); spare != 1 || made != 1 {
		t.Fatalf("%d spare sockets of %d made, want 1 of 1", spare, made)
	}
	tr.CloseIdleConnections()
	if spare, _ := tr.sockets.count(); spare != 0 {
		t.Fatalf("%d spare sockets after CloseIdleConnections, want 0", spare)
	}
}

// TestSocketDialErrors: a refused connection is net's error, and leaves its
// socket a spare for the next dial.
func TestSocketDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newTransport()
	c := &http.Client{Transport: tr}
	_, err = c.Get("http://" + addr + "/")
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || op.Addr.String() != addr || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a refused connection: %v, want a dial *net.OpError to %s, connection refused", err, addr)
	}
	s := newRawServer(t, closingAnswer, true)
	if got := get(t, c, s.url()); got != "ok" {
		t.Fatalf("body %q", got)
	}
	if _, made := tr.sockets.count(); made != 1 {
		t.Fatalf("%d sockets made, want 1", made)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url(), nil)
	if _, err := c.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled request: %v, want canceled", err)
	}
}

// TestSocketReadErrors: a server that resets the connection before its
// answer is a read error as net's connections report it.
func TestSocketReadErrors(t *testing.T) {
	ln := listen(t)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		var b [1]byte
		nc.Read(b[:])
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
	}()
	_, err := (&http.Client{Transport: newTransport()}).Get("http://" + ln.Addr().String() + "/")
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a reset before the answer: %v, want a read *net.OpError, connection reset", err)
	}
}

// TestSocketsIPv6 connects to ::1 on a socket of its own family.
func TestSocketsIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	tr := newTransport()
	c := &http.Client{Transport: tr}
	for range 3 {
		if got := get(t, c, "http://"+ln.Addr().String()+"/"); got != "ok" {
			t.Fatalf("body %q", got)
		}
	}
	if spare, made := tr.sockets.count(); spare != 1 || made != 1 {
		t.Fatalf("%d spare sockets of %d made, want 1 of 1", spare, made)
	}
}

// TestSparesUnderConcurrentRequests: requests at once each have a socket
// of their own, and no more sockets are made than were in use at once.
func TestSparesUnderConcurrentRequests(t *testing.T) {
	s := newRawServer(t, closingAnswer, true)
	tr := newTransport()
	c := &http.Client{Transport: tr}
	const workers, each = 8, 12 // within the capacity of s.closedConns
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				resp, err := c.Get(s.url())
				if err != nil {
					errs <- err
					return
				}
				var b [8]byte
				n, _ := resp.Body.Read(b[:])
				resp.Body.Close()
				if string(b[:n]) != "ok" {
					errs <- errors.New("body " + string(b[:n]))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := s.accepted.Load(); n != workers*each {
		t.Fatalf("%d connections accepted, want %d", n, workers*each)
	}
	if spare, made := tr.sockets.count(); made > workers || spare != made {
		t.Fatalf("%d spare sockets of %d made, want as many as made, at most %d", spare, made, workers)
	}
}

// TestSocketDeadline: a server that never answers is the request's
// deadline, and the socket its abort touched is closed, not spared.
func TestSocketDeadline(t *testing.T) {
	ln := listen(t)
	done := make(chan struct{})
	defer close(done)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		<-done
	}()
	tr := newTransport()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	if _, err := (&http.Client{Transport: tr}).Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a server that never answers: %v, want the deadline", err)
	}
	if spare, made := tr.sockets.count(); spare != 0 || made != 1 {
		t.Fatalf("%d spare sockets of %d made, want 0 of 1", spare, made)
	}
}

// TestSocketClosedErrors: a socket's calls after its close fail as a
// closed net.Conn's do, with net.ErrClosed.
func TestSocketClosedErrors(t *testing.T) {
	ln := listen(t)
	var ss sockets
	nc, ok, err := ss.dial(context.Background(), ln.Addr().String())
	if !ok || err != nil {
		t.Fatalf("dial: %v, %v", ok, err)
	}
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := nc.Read(b[:]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a read after the close: %v, want net.ErrClosed", err)
	}
	if _, err := nc.Write(b[:]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a write after the close: %v, want net.ErrClosed", err)
	}
	if err := nc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a second close: %v, want net.ErrClosed", err)
	}
}

// TestSocketDialCanceled: a dial whose context has ended fails with the
// context's error whether the connect or the abort comes first, and keeps
// no socket the abort touched.
func TestSocketDialCanceled(t *testing.T) {
	ln := listen(t)
	var ss sockets
	defer ss.closeAll()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		nc, ok, err := ss.dial(ctx, ln.Addr().String())
		if !ok || nc != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("dial %d with a canceled context: %v, %v, %v; want no connection, canceled", i, nc, ok, err)
		}
	}
	if spare, _ := ss.count(); spare != 0 {
		t.Fatalf("%d spare sockets after canceled dials, want 0", spare)
	}
}

// listen returns a listener on a loopback port, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// count returns how many spare sockets are kept and how many sockets
// were made.
func (ss *sockets) count() (spare, made int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.spare[0]) + len(ss.spare[1]), ss.made
}
