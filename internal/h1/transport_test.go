package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
)

// server is an httptest server that counts the connections it accepted
// and the ones it saw close.
type server struct {
	*httptest.Server
	opened, closed atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	s := &server{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newTransport() *Transport {
	return &Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, BufferSize: 1 << 10}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (t *Transport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.idle {
		n += len(l)
	}
	return n
}

func TestKeepsTheConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	tr := newTransport()
	c := &http.Client{Transport: tr}
	for range 20 {
		if got := get(t, c, s.URL); got != "ok" {
			t.Fatalf("body %q", got)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("20 requests opened %d connections, want 1", n)
	}
	if n := tr.idleCount(); n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
}

func TestBodies(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "/long":
			io.WriteString(w, strings.Repeat("x", 10_000)) // longer than the buffer
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, "short")
		}
	})
	tr := newTransport()
	c := &http.Client{Transport: tr}
	for path, want := range map[string]string{
		"/chunked": "part0;part1;part2;", "/long": strings.Repeat("x", 10_000), "/empty": "", "/": "short",
	} {
		for range 2 {
			if got := get(t, c, s.URL+path); got != want {
				t.Fatalf("%s: body of %d bytes, want %d", path, len(got), len(want))
			}
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections for bodies that all end, want 1", n)
	}
	// A HEAD answer has no body; closing it keeps the connection.
	resp, err := c.Head(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, c, s.URL)
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections after a HEAD, want 1", n)
	}
}

// rawServer answers each request on a connection with body, then closes
// the connection when closeAfter is set, or when the answer has no
// length; each connection it closes is sent on closedConns.
type rawServer struct {
	ln          net.Listener
	accepted    atomic.Int64
	closedConns chan struct{}
}

func newRawServer(t *testing.T, answer string, closeAfter bool) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, closedConns: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { nc.Close(); s.closedConns <- struct{}{} }()
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(nc, answer); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/" }

func TestServerClosedTheIdleConnection(t *testing.T) {
	// The server closes every connection after its answer without saying
	// so: the kept connection is found closed (or the GET sent again on a
	// new one) and every request succeeds.
	s := newRawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	tr := newTransport()
	c := &http.Client{Transport: tr}
	for i := range 5 {
		if got := get(t, c, s.url()); got != "ok" {
			t.Fatalf("request %d: body %q", i, got)
		}
		<-s.closedConns
	}
	if n := s.accepted.Load(); n != 5 {
		t.Fatalf("%d connections accepted, want 5", n)
	}
}

func TestOpenSeesTheServerClose(t *testing.T) {
	s := newRawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	tr := newTransport()
	get(t, &http.Client{Transport: tr}, s.url())
	<-s.closedConns
	tr.mu.Lock()
	var c *conn
	for _, l := range tr.idle {
		c = l[0]
	}
	tr.mu.Unlock()
	if c == nil {
		t.Fatal("no idle connection kept")
	}
	agenttest.Eventually(t, 5*time.Second, "the closed connection found closed", func() bool { return !c.open() })
}

func TestOpenOnALiveConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTransport()
	get(t, &http.Client{Transport: tr}, s.URL)
	c := tr.idle[strings.TrimPrefix(s.URL, "http://")][0]
	if !c.open() {
		t.Fatal("a kept connection the server holds open is found closed")
	}
}

func TestNotReusedWhenTheAnswerSaysNot(t *testing.T) {
	for name, answer := range map[string]string{
		"connection close": "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"no length":        "HTTP/1.1 200 OK\r\n\r\nok",
	} {
		t.Run(name, func(t *testing.T) {
			s := newRawServer(t, answer, name == "no length")
			tr := newTransport()
			c := &http.Client{Transport: tr}
			if got := get(t, c, s.url()); got != "ok" {
				t.Fatalf("body %q", got)
			}
			if n := tr.idleCount(); n != 0 {
				t.Fatalf("%d connections kept, want 0", n)
			}
		})
	}
}

func TestEarlyCloseClosesTheConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 100_000)) })
	tr := newTransport()
	c := &http.Client{Transport: tr}
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	var b [10]byte
	io.ReadFull(resp.Body, b[:])
	resp.Body.Close()
	if _, err := resp.Body.Read(b[:]); !errors.Is(err, errClosed) {
		t.Fatalf("read after close: %v, want %v", err, errClosed)
	}
	if n := tr.idleCount(); n != 0 {
		t.Fatalf("%d connections kept after an early close, want 0", n)
	}
	agenttest.Eventually(t, 5*time.Second, "the server sees the connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestDeadlineAndCancel(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	tr := newTransport()
	c := &http.Client{Transport: tr}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a server that does not answer: %v, want the deadline", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/body", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b [5]byte
	if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading the body after a cancel: %v, want canceled", err)
	}
	if n := tr.idleCount(); n != 0 {
		t.Fatalf("%d connections kept, want 0", n)
	}
}

func TestIdleBounds(t *testing.T) {
	release := make(chan struct{})
	var inFlight sync.WaitGroup
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			inFlight.Done()
			<-release
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport()
	tr.MaxIdleConnsPerHost = 2
	c := &http.Client{Transport: tr}
	var done sync.WaitGroup
	inFlight.Add(3)
	for range 3 {
		done.Add(1)
		go func() { defer done.Done(); get(t, c, s.URL+"/wait") }()
	}
	inFlight.Wait() // three connections at once
	close(release)
	done.Wait()
	if n := tr.idleCount(); n != 2 {
		t.Fatalf("%d idle connections, want the bound of 2", n)
	}
	tr.CloseIdleConnections()
	if n := tr.idleCount(); n != 0 {
		t.Fatalf("%d idle connections after CloseIdleConnections", n)
	}
	agenttest.Eventually(t, 5*time.Second, "the server sees all three closed", func() bool { return s.closed.Load() == 3 })

	tr.IdleConnTimeout = 10 * time.Millisecond
	get(t, c, s.URL)
	agenttest.Eventually(t, 5*time.Second, "an idle connection closed after IdleConnTimeout", func() bool {
		return tr.idleCount() == 0 && s.closed.Load() == 4
	})
}

func TestOtherSchemesGoToTheFallback(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls") }))
	defer s.Close()
	tr := newTransport()
	tr.Fallback = s.Client().Transport
	if got := get(t, &http.Client{Transport: tr}, s.URL); got != "tls" {
		t.Fatalf("body %q", got)
	}
	if n := tr.idleCount(); n != 0 {
		t.Fatalf("an https connection kept by this transport: %d", n)
	}
}

func TestSendsWhatNetHTTPSends(t *testing.T) {
	type seen struct {
		header http.Header
		host   string
		body   string
		proto  string
	}
	got := make(chan seen, 2)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header, r.Host, string(b), r.Proto}
	})
	send := func(rt http.RoundTripper) seen {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/completions?x=1", strings.NewReader(`{"a":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer t")
		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return <-got
	}
	std := send(&http.Transport{DisableCompression: true})
	ours := send(newTransport())
	if fmt.Sprint(std) != fmt.Sprint(ours) {
		t.Fatalf("the request differs from net/http's:\n net/http %v\n h1       %v", std, ours)
	}
}

func TestReplayable(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	post, _ := http.NewRequest(http.MethodPost, "http://x/", strings.NewReader("b"))
	keyed, _ := http.NewRequest(http.MethodPost, "http://x/", strings.NewReader("b"))
	keyed.Header.Set("Idempotency-Key", "k")
	unread, _ := http.NewRequest(http.MethodGet, "http://x/", io.NopCloser(strings.NewReader("b")))
	for _, c := range []struct {
		req  *http.Request
		want bool
	}{{get, true}, {post, false}, {keyed, true}, {unread, false}} {
		if got := replayable(c.req); got != c.want {
			t.Errorf("%s with Idempotency-Key %q: replayable %v, want %v", c.req.Method, c.req.Header.Get("Idempotency-Key"), got, c.want)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	c := &http.Client{Transport: newTransport()}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				path := fmt.Sprintf("/%d/%d", g, i)
				resp, err := c.Get(s.URL + path)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != path {
					t.Errorf("answer %q to %s", b, path)
				}
			}
		}()
	}
	wg.Wait()
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := (&http.Client{Transport: newTransport()}).Get("http://" + addr + "/")
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("a refused connection: %v, want a dial *net.OpError", err)
	}
}

// TestClosesWithAResetWhenTheServerCloses: a connection whose answer said
// Connection: close ends with a reset, so neither end keeps it in
// TIME_WAIT; one the server would keep open, closed because the transport
// keeps no more idle ones, ends with a FIN, which the server reads as the
// end of the connection.
func TestClosesWithAResetWhenTheServerCloses(t *testing.T) {
	for name, tc := range map[string]struct {
		answer string
		want   error
	}{
		"connection close": {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", syscall.ECONNRESET},
		"keep-alive":       {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", io.EOF},
	} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			after := make(chan error, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					after <- err
					return
				}
				defer nc.Close()
				br := bufio.NewReader(nc)
				if _, err := http.ReadRequest(br); err != nil {
					after <- err
					return
				}
				io.WriteString(nc, tc.answer)
				nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = br.ReadByte()
				after <- err
			}()
			tr := newTransport()
			tr.MaxIdleConnsPerHost = 0
			if got := get(t, &http.Client{Transport: tr}, "http://"+ln.Addr().String()+"/"); got != "ok" {
				t.Fatalf("body %q", got)
			}
			if err := <-after; !errors.Is(err, tc.want) {
				t.Fatalf("the server's read after its answer: %v, want %v", err, tc.want)
			}
		})
	}
}
