package extmanager

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The default client keeps one idle connection per server however many
// servers its checks go round: 600 servers checked twice open 600
// connections, not 1200 (a pool bounded at 512 dropped, at every check,
// the connection the next one needed).
func TestDefaultClientKeepsAConnectionPerServer(t *testing.T) {
	const servers = 600
	var opened atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"data":[]}`) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				opened.Add(1)
			}
		}}
	var urls []string
	for range servers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+ln.Addr().String()+"/v1/models")
		go func() { _ = srv.Serve(ln) }()
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := newDefaultClient(32)
	t.Cleanup(c.CloseIdleConnections)
	for round := range 2 {
		for _, u := range urls {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if n := opened.Load(); n != servers {
		t.Errorf("%d connections opened for %d servers checked twice, want %d", n, servers, servers)
	}
	// A kept connection is its socket: nothing runs for it while it idles
	// (net/http's transport has a read and a write loop on each).
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if n := strings.Count(stacks, "net/http.(*persistConn)"); n > 0 {
		t.Errorf("%d goroutine frames of net/http's persistConn for %d idle plain-HTTP connections, want none", n, servers)
	}
}
