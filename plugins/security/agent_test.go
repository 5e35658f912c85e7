package security_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/e2e/e2etest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/logtap"
	"github.com/vitals-dev/vitals/exporters/pluginstat"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/plugins/encryption"
	"github.com/vitals-dev/vitals/plugins/logconsumer"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	"github.com/vitals-dev/vitals/plugins/ratelimiting"
	"github.com/vitals-dev/vitals/plugins/routing"
	"github.com/vitals-dev/vitals/plugins/security"
	"github.com/vitals-dev/vitals/plugins/validation"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// The six built-in plugins of this issue, plus the bus they need.
var builtins = map[string]agent.Factory{
	messagebus.Name:   messagebus.Factory,
	security.Name:     security.Factory,
	encryption.Name:   encryption.Factory,
	logconsumer.Name:  logconsumer.Factory,
	ratelimiting.Name: ratelimiting.Factory,
	validation.Name:   validation.Factory,
	routing.Name:      routing.Factory,
}

var six = []string{security.Name, encryption.Name, logconsumer.Name, ratelimiting.Name, validation.Name, routing.Name}

const (
	adminToken  = "admin-token-1"
	viewerToken = "viewer-token-1"
)

func freeAddr(t testing.TB) string {
	return "tcp://" + e2etest.Addr(t)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// site is a data directory and bus addresses that outlive one agent run.
type site struct {
	dir, pub, sub string
	adminToken    string
	disabled      string
	extra         map[string]string // plugin → extra section lines
	readiness     string            // core.lifecycle.readiness; default all
	tokenEnv      string            // adds an admin token read from this variable
	plugins       string            // more plugin sections, appended
}

func newSite(t *testing.T) *site {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k1.key"), bytes.Repeat([]byte{7}, encryption.KeySize), 0o600); err != nil {
		t.Fatal(err)
	}
	return &site{dir: dir, pub: freeAddr(t), sub: freeAddr(t), adminToken: adminToken, extra: map[string]string{}}
}

func (s *site) config() string {
	readiness := s.readiness
	if readiness == "" {
		readiness = "all"
	}
	envToken := ""
	if s.tokenEnv != "" {
		envToken = "          - {name: ci, role: admin, env: " + s.tokenEnv + "}\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `core:
  lifecycle: {step_timeout: 5s, stop_timeout: 5s, watch_config: false, readiness: %s}
  api_gateway:
    plugins:
      message_bus:
        publish_address: %s
        subscribe_address: %s
        permissions:
          security: {publish: ["security.", "logs.", "audit."], subscribe: ["security.", "logs.", "plugin."]}
          routing: {publish: ["routing.", "logs.", "health.request."], subscribe: ["routing."]}
      encryption:
        keys: [{id: k1, file: %s}]
      log_consumer:
        path: %s
        flush_interval: 20ms
      security:
        tokens:
          - {name: ops, role: admin, sha256: %s}
          - {name: grafana, role: viewer, sha256: %s}
          - {name: flood, role: viewer, sha256: %s}
%s        audit: {path: %s}
      rate_limiting:
        api: {rate: 50, burst: 20}
      validation:
        http: {max_body_bytes: 1024}
      routing:
        default_timeout: 3s
        routes:
          slow_probe: {topic: health.request.slow_probe, timeout: 300ms}
          forbidden: {topic: secret.place}
`, readiness, s.pub, s.sub, filepath.Join(s.dir, "k1.key"), filepath.Join(s.dir, "logs.db"),
		security.HashToken(s.adminToken), security.HashToken(viewerToken), security.HashToken("flood-token"), envToken, filepath.Join(s.dir, "audit.db"))
	out := b.String() + s.plugins
	for name, lines := range s.extra {
		out = strings.Replace(out, "      "+name+":\n", "      "+name+":\n"+lines, 1)
	}
	if s.disabled != "" {
		out = strings.Replace(out, "      "+s.disabled+":\n", "      "+s.disabled+":\n        enabled: false\n", 1)
	}
	return out
}

type live struct {
	t       *testing.T
	s       *site
	a       *agent.Agent
	base    string
	path    string
	metrics *prometheus.Registry
	logs    *syncBuffer
	log     *slog.Logger // the agent's logger, through a logtap.Tap as in the binary
	cancel  context.CancelFunc
	done    chan error
	client  *http.Client
}

func startAgent(t *testing.T, s *site, wrap func(*agent.Config, net.Listener) (net.Listener, error)) *live {
	t.Helper()
	l := launchAgent(t, s, wrap, nil)
	l.waitStarted()
	return l
}

// launchAgent runs an agent with the builtins and the extra plugins, and
// returns without waiting for its startup.
func launchAgent(t *testing.T, s *site, wrap func(*agent.Config, net.Listener) (net.Listener, error), extra map[string]agent.Factory) *live {
	t.Helper()
	reg := agent.NewRegistry()
	for name, f := range builtins {
		if err := reg.Register(name, f); err != nil {
			t.Fatal(err)
		}
	}
	for name, f := range extra {
		if err := reg.Register(name, f); err != nil {
			t.Fatal(err)
		}
	}
	l := &live{t: t, s: s, metrics: prometheus.NewRegistry(), logs: &syncBuffer{}, done: make(chan error, 1), client: &http.Client{}}
	l.path = filepath.Join(s.dir, "core.yaml")
	if err := os.WriteFile(l.path, []byte(s.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadFile(context.Background(), l.path, reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.base = "http://" + ln.Addr().String()
	if wrap != nil {
		if ln, err = wrap(cfg, ln); err != nil {
			t.Fatal(err)
		}
		l.base = "https://" + ln.Addr().String()
		l.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test certificate
	}
	l.metrics.MustRegister(pluginstat.NewCollector())
	log := slog.New(logtap.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.log = log
	l.a, err = agent.New(agent.Options{
		Registry: reg, Config: cfg, ConfigPath: l.path, Env: envconfig.MapLookuper(nil),
		Metrics: l.metrics, Listener: ln, Version: "test", Logger: log, Guard: security.Guard,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	go func() { l.done <- l.a.Run(ctx) }()
	t.Cleanup(l.stop)
	return l
}

func (l *live) waitStarted() {
	l.t.Helper()
	select {
	case <-l.a.Started():
	case err := <-l.done:
		l.cancel = nil
		l.t.Fatalf("agent exited: %v\n%s", err, l.logs)
	case <-time.After(20 * time.Second):
		l.t.Fatal("agent did not start")
	}
}

func (l *live) stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	l.cancel = nil
	if err := <-l.done; err != nil {
		l.t.Errorf("agent Run: %v", err)
	}
	if tr, ok := l.client.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

func (l *live) states() map[string]string {
	out := map[string]string{}
	for _, p := range l.a.Manager().Plugins() {
		out[p.Name] = string(p.State)
	}
	return out
}

// do sends a request and returns the status, headers and body (decoded
// JSON error text for JSON errors).
func (l *live) do(method, path, token, ctype, body string) (int, http.Header, string) {
	l.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, l.base+path, rd)
	req.Header.Set(agent.CustomHeader, "test") // a program, not a browser form
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (l *live) get(path, token string) (int, string) {
	l.t.Helper()
	code, _, body := l.do("GET", path, token, "", "")
	return code, body
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	if !agenttest.Within(time.Until(deadline), cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// external dials the agent's bus as an external process would.
func external(t *testing.T, s *site, name string) *bus.Client {
	t.Helper()
	c := bus.Dial(bus.Options{PublishEndpoint: s.pub, SubscribeEndpoint: s.sub, Name: name, ReconnectMax: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestEachBuiltinCanBeDisabled(t *testing.T) {
	for _, off := range append([]string{""}, six...) {
		name := off
		if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			s := newSite(t)
			s.disabled = off
			l := startAgent(t, s, nil)
			for p, st := range l.states() {
				want := "running"
				if p == off {
					want = "disabled"
				}
				if st != want {
					t.Errorf("%s is %s, want %s\n%s", p, st, want, l.logs)
				}
			}
			token := adminToken
			if code, body := l.get("/readyz", ""); code != 200 {
				t.Fatalf("readyz %d %s", code, body)
			}
			if code, body := l.get("/api/v1/admin/plugins", token); code != 200 {
				t.Fatalf("plugins %d %s", code, body)
			}
			wantLogs := 200
			if off == logconsumer.Name {
				wantLogs = 404
			}
			if code, body := l.get("/api/v1/admin/logs", token); code != wantLogs {
				t.Fatalf("logs: %d %s", code, body)
			}
		})
	}
}

func TestAgentSecurityRateLimitValidation(t *testing.T) {
	s := newSite(t)
	l := startAgent(t, s, nil)

	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		code                                   int
		want                                   string
	}{
		{"metrics open", "GET", "/metrics", "", "", "", 200, "vitals_plugin_state"},
		{"no token", "GET", "/api/v1/admin/plugins", "", "", "", 401, "missing bearer token"},
		{"bad token", "GET", "/api/v1/admin/plugins", "nope", "", "", 401, "invalid bearer token"},
		{"viewer reads", "GET", "/api/v1/admin/plugins", viewerToken, "", "", 200, `"name": "validation"`},
		{"viewer cannot disable", "POST", "/api/v1/admin/plugins/routing/disable", viewerToken, "", "", 403, "needs role admin"},
		{"bad plugin name", "GET", "/api/v1/admin/plugins/Bad-Name", viewerToken, "", "", 400, "plugin name"},
		{"wrong content type", "POST", "/api/v1/admin/reload", adminToken, "text/plain", "reload please", 415, "not accepted"},
		{"malformed JSON", "POST", "/api/v1/admin/reload", adminToken, "application/json", `{"a":`, 400, "not valid JSON"},
		{"oversized body", "POST", "/api/v1/admin/reload", adminToken, "application/json", `{"a":"` + strings.Repeat("x", 2000) + `"}`, 413, "at most 1024"},
		{"admin disables", "POST", "/api/v1/admin/plugins/routing/disable", adminToken, "", "", 200, `"state": "disabled"`},
		{"admin enables", "POST", "/api/v1/admin/plugins/routing/enable", adminToken, "", "", 200, `"state": "running"`},
		{"unauthenticated is refused before validation", "POST", "/api/v1/admin/reload", "", "text/plain", "x", 401, "missing bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := l.do(tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.code, tc.want)
			}
		})
	}

	t.Run("rate limit and recovery", func(t *testing.T) {
		limited := 0
		var retry string
		for i := 0; i < 200 && limited == 0; i++ {
			code, h, _ := l.do("GET", "/api/v1/admin/health", "flood-token", "", "")
			if code == http.StatusTooManyRequests {
				limited++
				retry = h.Get("Retry-After")
			}
		}
		if limited == 0 || retry == "" {
			t.Fatalf("no 429 with Retry-After after 200 requests (retry %q)", retry)
		}
		// Another client is not affected.
		if code, _ := l.get("/api/v1/admin/health", viewerToken); code != 200 {
			t.Fatalf("other client: %d", code)
		}
		// The flooding client recovers as its bucket refills.
		eventually(t, "recovery from 429", func() bool {
			code, _ := l.get("/api/v1/admin/health", "flood-token")
			return code == 200
		})
	})

	t.Run("token rotation by reload", func(t *testing.T) {
		s.adminToken = "admin-token-2"
		if err := os.WriteFile(l.path, []byte(s.config()), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, body := l.do("POST", "/api/v1/admin/reload", adminToken, "", ""); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		if code, _ := l.get("/api/v1/admin/plugins", adminToken); code != 401 {
			t.Fatalf("old token after rotation: %d", code)
		}
		if code, _ := l.get("/api/v1/admin/plugins", "admin-token-2"); code != 200 {
			t.Fatalf("new token after rotation: %d", code)
		}
	})

	t.Run("audit records for each action", func(t *testing.T) {
		for _, tc := range []struct{ query, want string }{
			{"action=plugin.disable&actor=ops", `"target": "routing"`},
			{"action=plugin.enable&actor=ops", `"outcome": "success"`},
			{"action=config.reload&actor=ops", `"action": "config.reload"`},
			{"action=http.denied&actor=grafana", `"outcome": "denied"`},
			{"action=http.denied&actor=anonymous", `"remote": "127.0.0.1"`},
			{"action=lifecycle.disable", `"target": "routing"`},
			{"action=security.reload", `"action": "security.reload"`},
		} {
			eventually(t, "audit "+tc.query, func() bool {
				code, body := l.get("/api/v1/admin/audit?"+tc.query, "admin-token-2")
				return code == 200 && strings.Contains(body, tc.want)
			})
		}
	})
}

func decodeLogs(t *testing.T, body string) []logconsumer.Entry {
	t.Helper()
	var out struct{ Logs []logconsumer.Entry }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("logs body %q: %v", body, err)
	}
	return out.Logs
}

func TestAgentLogsBusAuditAndResources(t *testing.T) {
	s := newSite(t)
	l := startAgent(t, s, nil)
	ext := external(t, s, "ext_probe")
	ctx := context.Background()

	// An external plugin's log record and the agent's own records are
	// stored, sealed at rest, and read back over the API.
	rec, _ := bus.NewProto(&busv1.LogRecord{Level: "warn", Source: "ext_probe", Message: "GPU at 95C"})
	eventually(t, "external log stored", func() bool {
		_ = ext.Publish(ctx, "logs.warn.ext_probe", rec)
		code, body := l.get("/api/v1/admin/logs?source=ext_probe&level=warn", adminToken)
		return code == 200 && strings.Contains(body, "GPU at 95C")
	})
	// The agent's own records reach the store once log_consumer's
	// subscription is live; a reload makes fresh ones.
	eventually(t, "agent log stored", func() bool {
		l.do("POST", "/api/v1/admin/reload", adminToken, "", "")
		_, body := l.get("/api/v1/admin/logs?source=agent", adminToken)
		return len(decodeLogs(t, body)) > 0
	})
	db, err := store.Open(ctx, filepath.Join(s.dir, "logs.db"))
	if err != nil {
		t.Fatal(err)
	}
	var clear int
	if err := db.QueryRow(`SELECT COUNT(*) FROM logs WHERE sealed = 0`).Scan(&clear); err != nil {
		t.Fatal(err)
	}
	var body []byte
	_ = db.QueryRow(`SELECT body FROM logs WHERE source = 'ext_probe' LIMIT 1`).Scan(&body)
	_ = db.Close()
	if bytes.Contains(body, []byte("GPU at 95C")) {
		t.Fatal("external log stored in clear")
	}
	if id, err := encryption.KeyID(body); err != nil || id != "k1" {
		t.Fatalf("stored body key id %q, %v", id, err)
	}
	_ = clear // records before the encryption service started may be clear (encrypt: auto)

	// Invalid bus messages are dropped before log_consumer stores them.
	bad := bus.Message{ContentType: "application/json", Payload: []byte(`[not an object`)}
	_ = ext.Publish(ctx, "logs.error.ext_probe", bad)
	eventually(t, "validation rejection counted", func() bool {
		_, m := l.get("/metrics", "")
		return strings.Contains(m, `vitals_validation_rejected_total{kind="bus",reason="payload"}`)
	})

	// Request/reply through the routing service to an external responder,
	// a timeout, and a late reply.
	router, err := agent.Require[bus.Requester](ctx, l.a.Manager().Container(), bus.RoutingService)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := ext.Subscribe(ctx, "health.request.")
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for req := range reqs {
			if req.Topic == "health.request.slow_probe" {
				<-release
			}
			resp, _ := bus.NewProto(&busv1.HealthResponse{Plugin: strings.TrimPrefix(req.Topic, "health.request."), Message: "fine"})
			_ = bus.Reply(ctx, ext, req, resp)
			if req.Topic == "health.request.slow_probe" {
				return
			}
		}
	}()
	hreq, _ := bus.NewProto(&busv1.HealthRequest{Plugin: "ext_probe"})
	resp, err := router.Request(ctx, "ext_probe", hreq)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var hr busv1.HealthResponse
	if err := resp.Decode(&hr); err != nil || hr.Message != "fine" {
		t.Fatalf("reply %+v, %v", &hr, err)
	}
	if _, err := router.Request(ctx, "slow_probe", hreq); !errors.Is(err, routing.ErrTimeout) {
		t.Fatalf("slow request: %v, want timeout", err)
	}
	close(release)
	<-answered
	eventually(t, "late reply counted", func() bool {
		_, m := l.get("/metrics", "")
		return strings.Contains(m, "vitals_routing_late_replies_total 1")
	})

	// A denied bus publish (the route's topic is outside routing's
	// permissions) is an audit record.
	if _, err := router.Request(ctx, "forbidden", hreq); !errors.Is(err, bus.ErrDenied) {
		t.Fatalf("forbidden route: %v", err)
	}
	eventually(t, "bus denial audited", func() bool {
		_, d := l.get("/api/v1/admin/audit?action=bus.denied&actor=routing", adminToken)
		return strings.Contains(d, "secret.place")
	})
	// An external connection publishing the agent's alerts is refused at
	// the broker and audited under the connection's identity.
	alert, _ := bus.NewProto(&busv1.Alert{Name: "Fake"})
	eventually(t, "external agent-only publish refused and audited", func() bool {
		_ = ext.Publish(ctx, "alerts.critical", alert)
		_, d := l.get("/api/v1/admin/audit?action=bus.denied", adminToken)
		return strings.Contains(d, `"target": "publish alerts.critical"`) && strings.Contains(d, `"actor": "conn:`) &&
			strings.Contains(d, "only the agent publishes this topic")
	})
	// Audit records also go out on the bus.
	auditCh, err := ext.Subscribe(ctx, "audit.")
	if err != nil {
		t.Fatal(err)
	}
	_ = ext.Sync(ctx)
	l.do("POST", "/api/v1/admin/plugins/routing/disable", "nope", "", "")
	select {
	case m := <-auditCh:
		if !strings.HasPrefix(m.Topic, "audit.") {
			t.Fatalf("audit topic %s", m.Topic)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no audit record on the bus")
	}

	// Per-plugin goroutines are exported.
	_, m := l.get("/metrics", "")
	for _, p := range []string{"log_consumer", "security", "routing"} {
		if !strings.Contains(m, `vitals_plugin_goroutines{plugin="`+p+`"}`) {
			t.Errorf("no goroutine count for %s", p)
		}
	}
}

func TestLogsPersistAcrossRestart(t *testing.T) {
	s := newSite(t)
	l := startAgent(t, s, nil)
	ext := external(t, s, "ext_probe")
	rec, _ := bus.NewProto(&busv1.LogRecord{Level: "info", Source: "ext_probe", Message: "before restart"})
	eventually(t, "log stored", func() bool {
		_ = ext.Publish(context.Background(), "logs.info.ext_probe", rec)
		_, body := l.get("/api/v1/admin/logs?source=ext_probe", adminToken)
		return strings.Contains(body, "before restart")
	})
	l.stop()

	l2 := startAgent(t, s, nil)
	code, body := l2.get("/api/v1/admin/logs?source=ext_probe", adminToken)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	entries := decodeLogs(t, body)
	if len(entries) == 0 || entries[len(entries)-1].Message != "before restart" || entries[0].Encrypted {
		t.Fatalf("after restart: %+v", entries)
	}
	_, audit := l2.get("/api/v1/admin/audit?action=lifecycle.stop", adminToken)
	if !strings.Contains(audit, `"action": "lifecycle.stop"`) {
		t.Fatalf("audit of the first run's shutdown not kept: %s", audit)
	}
}

func TestAgentOverTLS(t *testing.T) {
	s := newSite(t)
	certFile, keyFile := selfSigned(t, s.dir)
	s.extra[encryption.Name] = "        tls: {cert_file: " + certFile + ", key_file: " + keyFile + "}\n"
	l := startAgent(t, s, encryption.WrapListener)
	if code, _ := l.get("/livez", ""); code != 200 {
		t.Fatalf("livez over TLS: %d", code)
	}
	if code, _ := l.get("/api/v1/admin/plugins", adminToken); code != 200 {
		t.Fatalf("admin API over TLS: %d", code)
	}
}
