package extmanager_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// A target's http_config basic_auth (its password from a file) and
// proxy_url carry every request: detection, the probes and the engine's
// signals. One vLLM wants a user and password on every path; another is
// reached only through a forward proxy, by a host name that does not
// resolve. Both are detected, read and healthy, every request the first
// sees has the credentials, and every request for the second went
// through the proxy.
func TestHTTPConfigBasicAuthAndProxy(t *testing.T) {
	const user, password, proxied = "vitals", "s3cret-basic", "llm.proxied.invalid:8000"
	var mu sync.Mutex
	seen := map[string]int{} // what the servers saw: "basic ok", "basic bad", "proxy <host>"
	count := func(k string) {
		mu.Lock()
		seen[k]++
		mu.Unlock()
	}
	sim := func() *aisim.Server {
		s, err := aisim.New(aisim.Config{Kind: probes.KindVLLM})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	guarded, behind := sim(), sim()
	basic := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			count("basic bad")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		count("basic ok")
		guarded.ServeHTTP(w, r)
	}))
	defer basic.Close()
	// A forward proxy gets the absolute URL; it serves the vLLM behind it.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count("proxy " + r.URL.Host)
		behind.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := start(t, fmt.Sprintf(`
directory: ""
bus: {enabled: false}
health: {interval: 20ms, unhealthy_interval: 20ms, start_spread: 0, jitter: 0, synthetic: true}
targets:
  - id: basic
    endpoint: %q
    http_config: {basic_auth: {username: %s, password_file: %q}}
  - id: proxied
    endpoint: "http://%s"
    http_config: {proxy_url: %q}
`, basic.URL, user, pwFile, proxied, proxy.URL))
	for _, id := range []string{"basic", "proxied"} {
		if p := r.awaitDetected(id); p.Kind != probes.KindVLLM {
			t.Errorf("%s: kind %s (%s), want vllm", id, p.Kind, p.Detection.Reason)
		}
		r.awaitHealth(id, func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
		if !hasSeries(t, r.metrics, "vitals_ai_requests_running", map[string]string{"plugin": id}) {
			t.Errorf("%s: no signals read", id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["basic bad"] != 0 || seen["basic ok"] == 0 {
		t.Errorf("the guarded server saw %d requests with the credentials and %d without", seen["basic ok"], seen["basic bad"])
	}
	if seen["proxy "+proxied] == 0 || len(seen) != 2 {
		t.Errorf("requests seen: %v, want the proxied target's through the proxy only", seen)
	}
}
