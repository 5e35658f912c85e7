package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Clients that send a request's headers and then drip its body hold their
// connections busy for a whole read_timeout. At max_connections the one
// busy longest is closed to let a probe in, as an idle one would be, so a
// few hundred of them cannot keep /livez out.
func TestBusyConnectionsDoNotStarveLivez(t *testing.T) {
	const max = 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newFrontMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnLimiter(ln, max, m)
	entered := make(chan struct{}, max)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body) // the client never finishes it
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	// The read timeout is long: only the limiter can let /livez in.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute, ConnState: lim.connState}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lim) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})

	slow := make([]net.Conn, 0, max)
	t.Cleanup(func() {
		for _, c := range slow {
			_ = c.Close()
		}
	})
	for i := range max {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		slow = append(slow, c)
		if _, err := fmt.Fprint(c, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(10 * time.Second)
	for i := range max {
		select {
		case <-entered:
		case <-timeout:
			t.Fatalf("%d of %d slow uploads reached their handler", i, max)
		}
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		resp, err := client.Get("http://" + ln.Addr().String() + "/livez")
		if err != nil {
			t.Fatalf("livez %d with %d slow uploads holding max_connections: %v", i, max, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("livez %d: %d", i, resp.StatusCode)
		}
	}
	if got := testutil.ToFloat64(m.shed.WithLabelValues("busy")); got < 1 {
		t.Errorf("shed{reason=busy} = %v after probes past %d busy connections, want at least 1", got, max)
	}
	lim.mu.Lock()
	n := len(lim.conns)
	lim.mu.Unlock()
	if n > max {
		t.Errorf("the limiter holds %d connections, more than max_connections %d", n, max)
	}
}

// The victim is the connection idle longest, a state change making a
// connection the newest of its kind; with none idle, the one busy longest.
// Closed and hijacked connections are forgotten.
func TestConnLimiterVictimOrder(t *testing.T) {
	m, err := newFrontMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(nil, 4, m)
	conns := make([]net.Conn, 4)
	for i := range conns {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		conns[i] = a
		l.mu.Lock()
		l.setLocked(&connInfo{c: a}, http.StateNew)
		l.mu.Unlock()
	}
	victim := func() (int, string) {
		t.Helper()
		l.mu.Lock()
		defer l.mu.Unlock()
		c, reason := l.victimLocked()
		for i, x := range conns {
			if x == c {
				return i, reason
			}
		}
		t.Fatalf("victim %v is none of the connections", c)
		return -1, ""
	}
	check := func(want int, wantReason string) {
		t.Helper()
		if got, reason := victim(); got != want || reason != wantReason {
			t.Fatalf("victim %d (%s), want %d (%s)", got, reason, want, wantReason)
		}
	}
	check(0, "idle")
	l.connState(conns[0], http.StateActive) // busy since now
	check(1, "idle")
	l.connState(conns[1], http.StateActive)
	l.connState(conns[1], http.StateIdle) // idle again, the newest
	check(2, "idle")
	l.connState(conns[2], http.StateClosed)
	l.connState(conns[3], http.StateHijacked)
	check(1, "idle")
	l.connState(conns[1], http.StateActive)
	check(0, "busy") // none idle: busy longest
	l.connState(conns[0], http.StateIdle)
	l.connState(conns[0], http.StateActive)
	check(1, "busy")
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	if n != 2 {
		t.Errorf("tracking %d connections after two were closed or hijacked, want 2", n)
	}
	l.connState(conns[2], http.StateActive) // forgotten: stays forgotten
	l.mu.Lock()
	n = len(l.conns)
	l.mu.Unlock()
	if n != 2 {
		t.Errorf("a closed connection's late state change tracked it again: %d connections", n)
	}
}

// BenchmarkConnLimiterAtMax: making room at max_connections, where every
// connection is busy but one that turns idle, as in a flood. The cost is
// that of the lists, whatever max is.
func BenchmarkConnLimiterAtMax(b *testing.B) {
	for _, max := range []int{512, 8192} {
		b.Run(fmt.Sprint(max), func(b *testing.B) {
			m, err := newFrontMetrics(nil)
			if err != nil {
				b.Fatal(err)
			}
			l := newConnLimiter(nil, max, m)
			conns := make([]*connInfo, max)
			for i := range conns {
				a, _ := net.Pipe()
				conns[i] = &connInfo{c: a}
				l.setLocked(conns[i], http.StateActive)
			}
			for i := 0; b.Loop(); i++ {
				l.mu.Lock()
				c, _ := l.victimLocked()
				l.forgetLocked(c)
				ci := conns[i%max]
				if ci.c != c {
					b.Fatalf("victim is not the one busy longest")
				}
				l.setLocked(ci, http.StateNew)
				l.mu.Unlock()
				l.connState(ci.c, http.StateActive)
			}
		})
	}
}
