package security_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/plugins/security"
)

// The admin API and every other guarded path answer 503 while security is
// down; the probes and /metrics stay open. Each case is a way security
// fails to come up.
func TestAuthFailsClosedWhenSecurityFails(t *testing.T) {
	for name, breakIt := range map[string]func(s *site){
		"corrupt audit.db": func(s *site) {
			if err := os.WriteFile(filepath.Join(s.dir, "audit.db"), []byte(strings.Repeat("not a database ", 512)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"token env var unset": func(s *site) {
			s.tokenEnv = "VITALS_TEST_TOKEN_THAT_IS_NOT_SET"
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSite(t)
			s.readiness = "required" // a failed optional plugin alone keeps the agent ready
			breakIt(s)
			l := startAgent(t, s, nil)
			if st := l.states()[security.Name]; st != "failed" {
				t.Fatalf("security is %s, want failed\n%s", st, l.logs)
			}
			for _, tc := range []struct {
				method, path, token string
				code                int
			}{
				{"GET", "/api/v1/admin/plugins", "", 503},
				{"GET", "/api/v1/admin/plugins", adminToken, 503},
				{"POST", "/api/v1/admin/plugins/routing/disable", "", 503},
				{"POST", "/api/v1/admin/reload", "", 503},
				{"GET", "/debug/pprof/cmdline", "", 503},
				{"GET", "/", "", 503},
				{"POST", "/metrics", "", 503},
				{"GET", "/metrics", "", 200},
				{"HEAD", "/metrics", "", 200},
				{"GET", "/livez", "", 200},
				{"GET", "/readyz", "", 503},
			} {
				code, _, body := l.do(tc.method, tc.path, tc.token, "application/json", "")
				if code != tc.code {
					t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
				}
				if code == 503 && tc.path != "/readyz" && !strings.Contains(body, "the security plugin failed") {
					t.Errorf("%s %s: 503 without the reason: %s", tc.method, tc.path, body)
				}
			}
			if st := l.states()["routing"]; st != "running" {
				t.Errorf("routing is %s after a refused disable\n%s", st, l.logs)
			}
			if _, body := l.get("/readyz?full=1", ""); !strings.Contains(body, "security plugin failed") {
				t.Errorf("readyz does not say security failed: %s", body)
			}
		})
	}
}

// While the agent starts, before the middleware chain is built, the admin
// API is closed: a request without a token is refused at once, not run.
func TestAuthClosedDuringStartup(t *testing.T) {
	s := newSite(t)
	s.plugins = "      slow: {}\n"
	var slow *agenttest.Plugin
	l := launchAgent(t, s, nil, map[string]agent.Factory{"slow": func(agent.Section) (agent.Plugin, error) {
		p := agenttest.New(nil, agent.Metadata{Name: "slow", Priority: agent.PriorityBusiness})
		p.Faults["start"] = agenttest.Hang
		slow = p
		return p, nil
	}})
	eventually(t, "security running while slow starts", func() bool {
		st := l.states()
		return st[security.Name] == "running" && st["slow"] == "starting"
	})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/admin/plugins"},
		{"POST", "/api/v1/admin/plugins/security/disable"},
		{"POST", "/api/v1/admin/plugins/routing/disable"},
	} {
		code, h, body := l.do(tc.method, tc.path, "", "application/json", "")
		if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "not available yet") {
			t.Errorf("%s %s during startup: %d %s, want 503 with Retry-After", tc.method, tc.path, code, body)
		}
	}
	if code, _ := l.get("/livez", ""); code != 200 {
		t.Errorf("livez during startup: %d", code)
	}
	if code, _ := l.get("/readyz", ""); code != 503 {
		t.Errorf("readyz during startup: %d", code)
	}
	slow.Release()
	l.waitStarted()
	if code, _ := l.get("/api/v1/admin/plugins", ""); code != 401 {
		t.Errorf("no token after startup: %d, want 401", code)
	}
	for _, p := range []string{security.Name, "routing"} {
		if st := l.states()[p]; st != "running" {
			t.Errorf("%s is %s after startup, want running\n%s", p, st, l.logs)
		}
	}
}

// Disabling security over the API needs an admin token, closes the API
// until a reload brings security back, and can be refused altogether.
func TestDisablingSecurity(t *testing.T) {
	t.Run("with an admin token", func(t *testing.T) {
		s := newSite(t)
		l := startAgent(t, s, nil)
		if code, _, body := l.do("POST", "/api/v1/admin/plugins/security/disable", viewerToken, "application/json", ""); code != 403 {
			t.Fatalf("viewer disables security: %d %s", code, body)
		}
		if code, _, body := l.do("POST", "/api/v1/admin/plugins/security/disable", adminToken, "application/json", ""); code != 200 {
			t.Fatalf("admin disables security: %d %s", code, body)
		}
		for _, tok := range []string{"", adminToken} {
			if code, body := l.get("/api/v1/admin/plugins", tok); code != 503 || !strings.Contains(body, "security plugin is disabled") {
				t.Errorf("admin API with security disabled (token %q): %d %s, want 503", tok, code, body)
			}
		}
		if code, _, _ := l.do("POST", "/api/v1/admin/plugins/security/enable", "", "application/json", ""); code != 503 {
			t.Errorf("enable without auth: %d, want 503", code)
		}
		if code, _ := l.get("/readyz", ""); code != 503 {
			t.Errorf("readyz with security disabled: %d", code)
		}
		// The config file still enables security: a reload restores it.
		if err := l.a.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if code, _ := l.get("/api/v1/admin/plugins", adminToken); code != 200 {
			t.Errorf("after reload: %d", code)
		}
		if code, _ := l.get("/api/v1/admin/plugins", ""); code != 401 {
			t.Errorf("after reload, no token: %d", code)
		}
	})
	t.Run("never", func(t *testing.T) {
		s := newSite(t)
		s.extra[security.Name] = "        api_disable: never\n"
		l := startAgent(t, s, nil)
		code, _, body := l.do("POST", "/api/v1/admin/plugins/security/disable", adminToken, "application/json", "")
		if code != 403 || !strings.Contains(body, "api_disable: never") {
			t.Fatalf("disable with api_disable never: %d %s", code, body)
		}
		if st := l.states()[security.Name]; st != "running" {
			t.Fatalf("security is %s", st)
		}
	})
}
