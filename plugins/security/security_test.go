package security

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/bus/bustest"
	"github.com/vitals-dev/vitals/exporters/audit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type env struct {
	p   *Plugin
	srv *httptest.Server
	bus *bustest.Bus
	ev  *agent.Events
}

type permProvider struct {
	b     *bustest.Bus
	perms bus.Permissions
}

func (p permProvider) ClientFor(plugin string, _ ...bus.Permissions) (bus.Bus, error) {
	return p.b.Client(plugin, p.perms), nil
}

// start runs the plugin and serves a stub API through its middleware on
// a loopback listener.
func start(t *testing.T, y string) *env {
	t.Helper()
	return startWith(t, y, nil)
}

func startWith(t *testing.T, y string, perms *bus.Permissions) *env {
	t.Helper()
	s, err := agent.NewSection("audit: {path: " + filepath.Join(t.TempDir(), "audit.db") + "}\n" + y)
	must(t, err)
	pl, err := Factory(s)
	must(t, err)
	e := &env{p: pl.(*Plugin), bus: bustest.New(), ev: agent.NewEvents()}
	c := agenttest.NewContainer(t)
	var prov bus.Provider = e.bus
	if perms != nil {
		prov = permProvider{e.bus, *perms}
	}
	must(t, c.Provide(bus.ServiceName, prov))
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: c, Events: e.ev})
	ctx := context.Background()
	must(t, e.p.Initialize(ctx, h))
	must(t, e.p.Start(ctx))
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), h, e.p) })
	api := http.NewServeMux()
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		_, _ = io.WriteString(w, "ok "+id.Name)
	})
	api.HandleFunc("POST /api/v1/admin/plugins/{name}/enable", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "nope" {
			http.Error(w, "unknown", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "enabled")
	})
	for _, rt := range e.p.Routes() {
		api.Handle(rt.Pattern, rt.Handler)
	}
	e.srv = httptest.NewServer(e.p.WrapHTTP(api))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) do(t *testing.T, method, path, tok string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// waitAudit polls the audit log until f matches n records.
func (e *env) waitAudit(t *testing.T, f audit.Filter, n int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	if !agenttest.Within(10*time.Second, func() bool {
		var err error
		recs, err = e.p.Audit().Query(context.Background(), f)
		must(t, err)
		return len(recs) >= n
	}) {
		t.Fatalf("audit %+v: %d records, want %d: %+v", f, len(recs), n, recs)
	}
	return recs
}

func tokens(admin, viewer string) string {
	return "tokens:\n  - {name: ops, role: admin, sha256: " + HashToken(admin) + "}\n  - {name: grafana, role: viewer, sha256: " + HashToken(viewer) + "}\n"
}

func TestAuthnAndAuthz(t *testing.T) {
	e := start(t, tokens("admin-secret", "viewer-secret"))
	for _, tc := range []struct {
		name, method, path, auth string
		code                     int
		want                     string
	}{
		{"metrics open", "GET", "/metrics", "", 200, "ok"},
		{"livez open", "GET", "/livez", "", 200, "ok"},
		{"open paths are GET only", "POST", "/metrics", "", 401, "missing bearer token"},
		{"AI plugin readiness open", "GET", "/api/v1/ai-plugins/llm/ready", "", 200, "ok"},
		{"AI plugin readiness is GET only", "POST", "/api/v1/ai-plugins/llm/ready", "", 401, "missing bearer token"},
		{"AI plugin readiness of a dot segment", "GET", "/api/v1/ai-plugins/../ready", "", 401, "missing bearer token"},
		{"AI plugin readiness is one segment deep", "GET", "/api/v1/ai-plugins/a/b/ready", "", 401, "missing bearer token"},
		{"the rest of the AI plugin API is closed", "GET", "/api/v1/ai-plugins/llm", "", 401, "missing bearer token"},
		{"no token", "GET", "/api/v1/admin/plugins", "", 401, "missing bearer token"},
		{"wrong scheme", "GET", "/api/v1/admin/plugins", "Basic b3BzOng=", 401, "malformed Authorization"},
		{"empty bearer", "GET", "/api/v1/admin/plugins", "Bearer ", 401, "malformed Authorization"},
		{"wrong token", "GET", "/api/v1/admin/plugins", "Bearer nope", 401, "invalid bearer token"},
		{"viewer reads", "GET", "/api/v1/admin/plugins", "Bearer viewer-secret", 200, "ok grafana"},
		{"scheme case-insensitive", "GET", "/api/v1/admin/plugins", "bearer viewer-secret", 200, "ok grafana"},
		{"viewer may not act", "POST", "/api/v1/admin/plugins/validation/enable", "Bearer viewer-secret", 403, "needs role admin"},
		{"admin reads", "GET", "/api/v1/admin/health", "Bearer admin-secret", 200, "ok ops"},
		{"admin acts", "POST", "/api/v1/admin/plugins/validation/enable", "Bearer admin-secret", 200, "enabled"},
		{"admin action that fails", "POST", "/api/v1/admin/plugins/nope/enable", "Bearer admin-secret", 404, "unknown"},
		{"index needs a token", "GET", "/", "", 401, "missing bearer token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := e.do(t, tc.method, tc.path, tc.auth)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s: %d %q, want %d with %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
			if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %v", h)
			}
			if (code == 401 || code == 403) && h.Get("Content-Type") != "application/json" {
				t.Errorf("error is not JSON: %v", h)
			}
		})
	}
	// Each denial and each action is an audit record with who and outcome.
	denied := e.waitAudit(t, audit.Filter{Action: "http.denied"}, 7)
	if denied[0].Outcome != audit.OutcomeDenied || denied[0].Remote != "127.0.0.1" {
		t.Errorf("denial record %+v", denied[0])
	}
	forbidden := e.waitAudit(t, audit.Filter{Action: "http.denied", Actor: "grafana"}, 1)
	if !strings.Contains(forbidden[0].Target, "POST /api/v1/admin/plugins/validation/enable") {
		t.Errorf("forbidden record %+v", forbidden[0])
	}
	acts := e.waitAudit(t, audit.Filter{Action: "plugin.enable", Actor: "ops"}, 2)
	if acts[0].Target != "nope" || acts[0].Outcome != audit.OutcomeFailure || acts[1].Target != "validation" || acts[1].Outcome != audit.OutcomeSuccess {
		t.Errorf("action records %+v", acts)
	}
	// And they are readable over the API, by a viewer.
	code, _, body := e.do(t, "GET", "/api/v1/admin/audit?action=plugin.enable&actor=ops", "Bearer viewer-secret")
	if code != 200 || !strings.Contains(body, `"target": "validation"`) {
		t.Fatalf("audit API: %d %s", code, body)
	}
	code, _, body = e.do(t, "GET", "/api/v1/admin/audit?outcome=maybe", "Bearer viewer-secret")
	if code != 400 || !strings.Contains(body, `outcome \"maybe\"`) {
		t.Fatalf("bad audit query: %d %s", code, body)
	}
}

func TestTokenRotationByReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	must(t, os.WriteFile(file, []byte("first-token\n"), 0o600))
	y := "tokens:\n  - {name: ci, role: admin, file: " + file + "}\n"
	e := start(t, y)
	if code, _, _ := e.do(t, "POST", "/api/v1/admin/reload", "Bearer first-token"); code != 200 {
		t.Fatalf("first token: %d", code)
	}
	must(t, os.WriteFile(file, []byte("second-token"), 0o600))
	s, _ := agent.NewSection("audit: {path: " + filepath.Join(dir, "a.db") + "}\n" + y)
	must(t, e.p.Reload(context.Background(), s))
	if code, _, _ := e.do(t, "POST", "/api/v1/admin/reload", "Bearer first-token"); code != 401 {
		t.Fatalf("old token after rotation: %d", code)
	}
	if code, _, _ := e.do(t, "POST", "/api/v1/admin/reload", "Bearer second-token"); code != 200 {
		t.Fatalf("new token after rotation: %d", code)
	}
	// A token that cannot be read rejects the reload and keeps the old one.
	s, _ = agent.NewSection("tokens:\n  - {name: ci, role: admin, env: VITALS_TEST_UNSET_TOKEN}\n")
	if err := e.p.Reload(context.Background(), s); err == nil || !strings.Contains(err.Error(), "VITALS_TEST_UNSET_TOKEN") {
		t.Fatalf("reload with unset env: %v", err)
	}
	if code, _, _ := e.do(t, "GET", "/api/v1/admin/plugins", "Bearer second-token"); code != 200 {
		t.Fatalf("token after rejected reload: %d", code)
	}
	e.waitAudit(t, audit.Filter{Action: "config.reload", Actor: "ci"}, 2)
	e.waitAudit(t, audit.Filter{Action: "security.reload"}, 1)
}

func TestAnonymousLoopbackOnly(t *testing.T) {
	e := start(t, "")
	if code, _, body := e.do(t, "POST", "/api/v1/admin/plugins/x/enable", ""); code != 200 || body != "enabled" {
		t.Fatalf("loopback without tokens: %d %s", code, body)
	}
	// Anonymous loopback clients may not switch security off.
	if code, _, body := e.do(t, "POST", "/api/v1/admin/plugins/security/disable", ""); code != 403 || !strings.Contains(body, "needs an admin token") {
		t.Fatalf("anonymous disables security: %d %s", code, body)
	}
	for _, tc := range []struct {
		remote, host string
		code         int
	}{
		{"10.1.2.3:4000", "127.0.0.1:9464", 401},
		{"[2001:db8::1]:4000", "127.0.0.1:9464", 401},
		{"[::1]:4000", "[::1]:9464", 200},
		{"127.0.0.2:4000", "localhost:9464", 200},
		// DNS rebinding: a page on a name that now resolves to loopback.
		{"127.0.0.1:4000", "rebind.attacker.example:9464", 401},
	} {
		t.Run(tc.remote+" "+tc.host, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/api/v1/admin/plugins", nil)
			req.RemoteAddr, req.Host = tc.remote, tc.host
			e.p.WrapHTTP(http.NotFoundHandler()).ServeHTTP(rec, req)
			if got := rec.Code; (tc.code == 200) != (got != 401) {
				t.Fatalf("remote %s, Host %s: %d, want %d", tc.remote, tc.host, got, tc.code)
			}
		})
	}
	d := start(t, "anonymous: deny\n")
	if code, _, _ := d.do(t, "GET", "/api/v1/admin/plugins", ""); code != 401 {
		t.Fatalf("anonymous deny: %d", code)
	}
}

func TestAuditsLifecycle(t *testing.T) {
	e := startWith(t, "", &bus.Permissions{Publish: []string{"security.", "logs.", "audit."}, Subscribe: []string{"security."}})
	e.ev.Emit(agent.Event{Plugin: "validation", Step: "start", From: agent.StateStarting, To: agent.StateRunning, Time: time.Now()})
	e.ev.Emit(agent.Event{Plugin: "routing", Step: "start", From: agent.StateStarting, To: agent.StateFailed, Error: "boom", Time: time.Now()})
	e.ev.Emit(agent.Event{Plugin: "routing", Step: "initialize", From: agent.StateRegistered, To: agent.StateInitializing})

	recs := e.waitAudit(t, audit.Filter{Action: "lifecycle."}, 2)
	if len(recs) != 2 || recs[0].Outcome != audit.OutcomeFailure || !strings.Contains(recs[0].Detail, "boom") {
		t.Fatalf("lifecycle records %+v", recs)
	}
	// Stored records are published on audit.<action>.
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return published(e.bus, "audit.lifecycle.start") }) {
		t.Fatal("audit.lifecycle.start not published")
	}
}

func published(b *bustest.Bus, topic string) bool {
	for _, m := range b.Published() {
		if m.Topic == topic {
			return true
		}
	}
	return false
}

func TestDefaultPermissionsPublishAudit(t *testing.T) {
	// With no permissions of its own in config, the plugin may publish
	// what it uses: audit.*.
	e := start(t, "")
	e.p.Audit().Record(audit.Record{Action: "one"})
	if !agenttest.Within(10*time.Second, func() bool { return published(e.bus, "audit.one") || e.p.noPublish.Load() }) || e.p.noPublish.Load() {
		t.Fatal("audit.one not published with the default permissions")
	}
}

func TestDeniedPublishingTurnsItselfOff(t *testing.T) {
	// Permissions in config that leave out audit.*: publishing turns itself
	// off after the first denial instead of feeding denials back in a loop.
	e := startWith(t, "", &bus.Permissions{Publish: []string{"security.", "logs."}, Subscribe: []string{"security."}})
	e.p.Audit().Record(audit.Record{Action: "one"})
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return e.p.noPublish.Load() }) {
		t.Fatal("publishing still on after a denial")
	}
	if published(e.bus, "audit.one") {
		t.Fatal("published despite the permissions")
	}
}

func TestListenWarning(t *testing.T) {
	reg := agent.NewRegistry()
	must(t, reg.Register(Name, Factory))
	for _, tc := range []struct{ name, yaml, want string }{
		{"loopback", "listen: 127.0.0.1:9464\n", ""},
		{"localhost", "listen: localhost:9464\n", ""},
		{"wide, security off", "listen: 0.0.0.0:9464\n", "security plugin is off"},
		{"wide, no tokens", "listen: 0.0.0.0:9464\n    plugins:\n      security: {}\n", "security has no tokens"},
		{"wide, tokens", "listen: 0.0.0.0:9464\n    plugins:\n      security:\n        tokens: [{name: a, role: admin, env: X}]\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := agent.Parse(context.Background(), "core.yaml", []byte("core:\n  api_gateway:\n    "+tc.yaml), reg, envconfig.MapLookuper(nil))
			must(t, err)
			got := ListenWarning(cfg)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("ListenWarning = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInvalidConfigs(t *testing.T) {
	agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-role.yaml":        `tokens[0].role: want viewer or admin, got "root"`,
		"invalid-sources.yaml":     "tokens[0]: set exactly one of sha256, file and env",
		"invalid-hash.yaml":        "tokens[0].sha256: want 64 hex digits",
		"invalid-open-api.yaml":    "the admin API cannot be opened",
		"invalid-open-root.yaml":   `open_paths: entry 1: "/": a prefix of /api/: the admin API cannot be opened`,
		"invalid-open-star.yaml":   `open_paths: entry 0: "/debug/*/profile": * is only for /api/v1/ai-plugins/*/ready`,
		"invalid-duplicate.yaml":   `tokens[1].name: duplicate token name "ops"`,
		"invalid-anonymous.yaml":   `anonymous: want loopback or deny`,
		"invalid-api-disable.yaml": `api_disable: want token or never, got "sometimes"`,
	})
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	n := 0
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		n++
		s, err := agent.NewSection("audit: {path: " + filepath.Join(dir, string(rune('a'+n)), "audit.db") + "}\n")
		must(t, err)
		p, err := Factory(s)
		must(t, err)
		return p
	}, func(t *testing.T, c *agent.Container) {
		must(t, c.Provide(bus.ServiceName, bus.Provider(bustest.New())))
	})
}
