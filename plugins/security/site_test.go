package security_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	"github.com/vitals-dev/vitals/plugins/encryption"
	"github.com/vitals-dev/vitals/plugins/logconsumer"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	"github.com/vitals-dev/vitals/plugins/ratelimiting"
	"github.com/vitals-dev/vitals/plugins/routing"
	"github.com/vitals-dev/vitals/plugins/security"
	"github.com/vitals-dev/vitals/plugins/validation"
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
	logs    *agenttest.LogBuffer
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
	l := &live{t: t, s: s, metrics: prometheus.NewRegistry(), logs: &agenttest.LogBuffer{}, done: make(chan error, 1), client: &http.Client{}}
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
