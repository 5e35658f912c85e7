package agent_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// raw sends one request built by hand (a browser's headers, a foreign
// Host) and returns the status and body.
func (l *live) raw(method, path string, header map[string]string, body string) (int, string) {
	l.t.Helper()
	req, _ := http.NewRequest(method, l.base+path, strings.NewReader(body))
	if body == "" {
		req.Body = nil
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A page in a browser cannot change the agent: a form or simple fetch
// cannot send JSON or a custom header, a rebound DNS name is not a Host the
// loopback listener serves, and a foreign Origin is refused.
func TestNoCrossSiteWrites(t *testing.T) {
	l := startLive(t, false, basePlugins+"      extra:\n        enabled: false\n")
	hostport := strings.TrimPrefix(l.base, "http://")
	_, port, _ := net.SplitHostPort(hostport)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		code   int
		want   string
	}{
		{"empty POST from a form", "POST", "/api/v1/admin/plugins/extra/enable", nil, "", 403, "needs Content-Type: application/json or an X-Requested-With header"},
		{"text/plain POST", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"Content-Type": "text/plain"}, "{}", 403, "cross-site request protection"},
		{"urlencoded POST", "POST", "/api/v1/admin/reload", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", 403, "cross-site"},
		{"multipart POST", "POST", "/api/v1/admin/reload", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "--x--", 403, "cross-site"},
		{"DNS rebinding read", "GET", "/api/v1/admin/plugins", map[string]string{"Host": "rebind.attacker.example:" + port}, "", 403, "rebind.attacker.example:" + port + `\" is not served here`},
		{"DNS rebinding write", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"Host": "rebind.attacker.example:" + port, "Content-Type": "application/json", "Origin": "http://rebind.attacker.example:" + port}, "", 403, "allowed_hosts"},
		{"foreign Origin", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"Content-Type": "application/json", "Origin": "https://attacker.example"}, "", 403, `cross-origin request from \"https://attacker.example\" refused`},
		{"null Origin", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"X-Requested-With": "x", "Origin": "null"}, "", 403, "cross-origin"},
		{"foreign Origin read", "GET", "/api/v1/admin/plugins", map[string]string{"Origin": "https://attacker.example"}, "", 403, "cross-origin"},
		{"JSON POST", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"Content-Type": "application/json; charset=utf-8"}, "", 200, `"state": "running"`},
		{"POST with the custom header", "POST", "/api/v1/admin/plugins/extra/disable", map[string]string{"X-Requested-With": "curl"}, "", 200, `"state": "disabled"`},
		{"same Origin", "POST", "/api/v1/admin/plugins/extra/enable", map[string]string{"Content-Type": "application/json", "Origin": l.base}, "", 200, "running"},
		{"Host localhost", "GET", "/api/v1/admin/plugins", map[string]string{"Host": "localhost:" + port}, "", 200, "plugins"},
		{"Host IPv6 literal", "GET", "/api/v1/admin/plugins", map[string]string{"Host": "[::1]:" + port}, "", 200, "plugins"},
		{"probe by IP", "GET", "/livez", nil, "", 200, "{}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := l.raw(tc.method, tc.path, tc.header, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.code, tc.want)
			}
		})
	}
	if st := l.states()["extra"]; st != "running" {
		t.Errorf("extra is %s; only the allowed requests may have changed it", st)
	}
	for reason, want := range map[string]float64{"host": 2, "origin": 3, "cross_site": 4} {
		if got := testutil.ToFloat64(mustVec(t, l.metrics, "vitals_http_rejected_total", map[string]string{"reason": reason})); got != want {
			t.Errorf("vitals_http_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// Clients reach an agent on a routable address by whatever name points at
// it: without allowed_hosts, Host is not checked there.
func TestHostUncheckedOffLoopback(t *testing.T) {
	l := startLiveGateway(t, false, "    listen: 0.0.0.0:9464\n", basePlugins)
	if code, body := l.raw("GET", "/api/v1/admin/plugins", map[string]string{"Host": "vitals.monitoring.svc:9464"}, ""); code != 200 {
		t.Fatalf("Host by service name: %d %s", code, body)
	}
	if code, _ := l.raw("POST", "/api/v1/admin/plugins/bus/enable", nil, ""); code != 403 {
		t.Fatalf("cross-site POST off loopback: %d, want 403", code)
	}
}

func TestAllowedHostsAndOrigins(t *testing.T) {
	l := startLiveGateway(t, false, "    allowed_hosts: [vitals.test, .svc.example]\n    allowed_origins: [https://grafana.test]\n", basePlugins)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(l.base, "http://"))
	for _, tc := range []struct {
		name   string
		header map[string]string
		code   int
	}{
		{"listed host", map[string]string{"Host": "vitals.test:" + port, "X-Requested-With": "x"}, 200},
		{"listed domain", map[string]string{"Host": "vitals.monitoring.svc.example:" + port, "X-Requested-With": "x"}, 200},
		{"other host", map[string]string{"Host": "vitals.other:" + port, "X-Requested-With": "x"}, 403},
		{"listed origin", map[string]string{"Origin": "https://grafana.test", "Content-Type": "application/json"}, 200},
		{"unlisted origin", map[string]string{"Origin": "http://grafana.test", "Content-Type": "application/json"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := l.raw("POST", "/api/v1/admin/plugins/bus/enable", tc.header, ""); code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
		})
	}
}

// readUntilClosed reads from c until the server closes it, or fails the
// test after limit.
func readUntilClosed(t *testing.T, c net.Conn, limit time.Duration, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open for %s", what, limit)
	}
}

// The server ends slow and idle clients on its own.
func TestSlowAndIdleClientsAreCut(t *testing.T) {
	l := startLiveGateway(t, false, "    http: {read_header_timeout: 200ms, read_timeout: 300ms, idle_timeout: 200ms, max_header_bytes: 4096}\n", basePlugins)
	addr := strings.TrimPrefix(l.base, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// Headers that never end.
	c := dial()
	_, _ = io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
	readUntilClosed(t, c, 5*time.Second, "slow headers")

	// A body that never comes.
	c = dial()
	_, _ = io.WriteString(c, "POST /api/v1/admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	readUntilClosed(t, c, 5*time.Second, "slow body")

	// Headers past max_header_bytes.
	req, _ := http.NewRequest("GET", l.base+"/livez", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 8<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("8 KiB header with max_header_bytes 4096: %d, want 431", resp.StatusCode)
	}

	// A keep-alive connection that goes quiet after one request.
	c = dial()
	_, _ = io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("livez over the raw connection: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	readUntilClosed(t, c, 5*time.Second, "idle keep-alive")
}

// 1000 idle connections do not keep a probe out: past max_connections the
// longest-idle one is closed to make room, so /livez answers while the
// server holds no more than the limit.
func TestIdleConnectionsDoNotStarveLivez(t *testing.T) {
	const max, idle = 100, 1000
	// The header timeout is long: only the limiter can let /livez in.
	l := startLiveGateway(t, false, "    http: {max_connections: 100, read_header_timeout: 1m, read_timeout: 1m, idle_timeout: 1m}\n", basePlugins)
	addr := strings.TrimPrefix(l.base, "http://")
	conns := make([]net.Conn, 0, idle)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range idle {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// They wait for a request header outside the server, at most 4x
	// max_connections of them; the rest are closed to make room.
	shed := func() float64 {
		return testutil.ToFloat64(mustVec(t, l.metrics, "vitals_http_connections_shed_total", map[string]string{"reason": "header"}))
	}
	l.waitFor("the front to accept every idle connection", func() bool { return shed() >= idle-4*max })
	if open := testutil.ToFloat64(gauge(t, l.metrics, "vitals_http_connections")); open > max {
		t.Errorf("the server holds %v connections, more than max_connections %d", open, max)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		resp, err := client.Get(l.base + "/livez")
		if err != nil {
			t.Fatalf("livez %d with %d idle connections: %v", i, idle, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("livez %d: %d", i, resp.StatusCode)
		}
	}
}

// Connections that have not sent a whole request header wait outside the
// server and take no place under max_connections, so they are neither
// served nor shed: a flood of them, silent or stopped halfway through a
// header, causes no reconnect churn, and /livez goes straight to the server.
func TestHeaderlessConnectionsWaitOutsideTheServer(t *testing.T) {
	const max, flood = 10, 30 // within 4x max: none is closed to make room
	l := startLiveGateway(t, false, "    http: {max_connections: 10, read_header_timeout: 1m, read_timeout: 1m, idle_timeout: 1m}\n", basePlugins)
	addr := strings.TrimPrefix(l.base, "http://")
	conns := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for i := range flood {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			if _, err := io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		resp, err := client.Get(l.base + "/livez")
		if err != nil {
			t.Fatalf("livez %d: %v", i, err)
		}
		_ = resp.Body.Close()
	}
	for _, reason := range []string{"idle", "busy", "header"} {
		if n := testutil.ToFloat64(mustVec(t, l.metrics, "vitals_http_connections_shed_total", map[string]string{"reason": reason})); n != 0 {
			t.Errorf("%v connections shed as %s; want none: headerless connections must not take the server's places", n, reason)
		}
	}
	if open := testutil.ToFloat64(gauge(t, l.metrics, "vitals_http_connections")); open > 1 {
		t.Errorf("the server holds %v connections; want at most the probe's", open)
	}
}
