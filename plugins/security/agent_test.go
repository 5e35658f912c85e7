package security_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/plugins/encryption"
	"github.com/vitals-dev/vitals/plugins/logconsumer"
	"github.com/vitals-dev/vitals/plugins/routing"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

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
