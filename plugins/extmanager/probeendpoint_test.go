package extmanager_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/e2e/e2etest"
	"github.com/vitals-dev/vitals/probes"
)

// probeAPI starts an ExtManager with section and serves its routes.
func probeAPI(t *testing.T, section string) (*rig, string) {
	t.Helper()
	r := start(t, "directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\n"+section)
	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func getProbe(t *testing.T, base, query string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/probe?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// JSON errors escape their quotes; the tests match the text.
	return resp.StatusCode, strings.ReplaceAll(string(b), `\"`, `"`)
}

func wantLines(t *testing.T, what, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("%s: no line %q in:\n%s", what, l, body)
		}
	}
}

// TestProbeEndpoint: /probe detects the target and runs the module's
// checks, answering with the metrics of that one probe as
// blackbox_exporter does; a server that is down is a 200 whose success is
// 0 with the failed step and its class.
func TestProbeEndpoint(t *testing.T) {
	_, llama := simServer(t, probes.KindLlamaCpp)
	closed := httptest.NewServer(http.NotFoundHandler())
	down := closed.URL
	closed.Close()
	r, api := probeAPI(t, "probe: {enabled: true}\n")

	code, body := getProbe(t, api, "target="+url.QueryEscape(llama))
	if code != 200 {
		t.Fatalf("probe: %d %s", code, body)
	}
	wantLines(t, "default module", body,
		"vitals_probe_success 1",
		`vitals_probe_step_success{step="detect"} 1`,
		`vitals_probe_step_success{step="liveness"} 1`,
		`vitals_probe_step_success{step="readiness"} 1`,
		`vitals_probe_capability{capability="chat"} 1`,
	)
	if !strings.Contains(body, `vitals_probe_info{kind="llamacpp"`) || strings.Contains(body, `step="synthetic"`) {
		t.Errorf("default module: info or steps wrong:\n%s", body)
	}

	code, body = getProbe(t, api, "module=inference&kind=llamacpp&target="+url.QueryEscape(llama))
	wantLines(t, "inference module", body, "vitals_probe_success 1", `vitals_probe_step_success{step="synthetic"} 1`)
	if code != 200 || !strings.Contains(body, "vitals_probe_time_to_first_token_seconds ") {
		t.Errorf("inference module: %d, no time to first token:\n%s", code, body)
	}

	code, body = getProbe(t, api, "target="+url.QueryEscape(down))
	wantLines(t, "down", body, "vitals_probe_success 0", `vitals_probe_step_success{step="detect"} 0`, `vitals_probe_error{class="refused",step="detect"} 1`)
	if code != 200 || strings.Contains(body, `step="liveness"`) {
		t.Errorf("down: %d\n%s", code, body)
	}

	if got := testutil.ToFloat64(r.e.ProbeRequests().WithLabelValues("default", "success")); got != 1 {
		t.Errorf("successes counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.e.ProbeRequests().WithLabelValues("default", "failure")); got != 1 {
		t.Errorf("failures counted %v, want 1", got)
	}
}

// TestProbeRefusesBadRequests: the target must be an http or https base
// URL without user info, query or fragment, of an allowed host; module
// and kind must be known. Each refusal is a 400 that says why, counted.
func TestProbeRefusesBadRequests(t *testing.T) {
	r, api := probeAPI(t, "probe: {enabled: true, allowed_targets: [loopback, 10.0.0.0/8]}\n")
	for _, tc := range []struct{ query, want string }{
		{"", "target is required"},
		{"target=" + url.QueryEscape("ftp://127.0.0.1/"), "want an http or https URL"},
		{"target=" + url.QueryEscape("file:///etc/passwd"), "want an http or https URL"},
		{"target=" + url.QueryEscape("http://user:pw@127.0.0.1:1"), "user info is not allowed"},
		{"target=" + url.QueryEscape("http://127.0.0.1:1/?x=1"), "no query or fragment"},
		{"target=" + url.QueryEscape("http://127.0.0.1:1/#x"), "no query or fragment"},
		{"target=" + url.QueryEscape("http://192.168.1.1:8080"), `host "192.168.1.1" is not allowed (probe.allowed_targets: loopback, 10.0.0.0/8)`},
		{"target=" + url.QueryEscape("http://metadata.internal"), `host "metadata.internal" is not allowed`},
		{"target=" + url.QueryEscape("http://127.0.0.1:1") + "&module=nope", `module "nope" is not configured; known: default, inference`},
		{"target=" + url.QueryEscape("http://127.0.0.1:1") + "&kind=gpt", `kind "gpt": want auto or one of`},
		{"target=" + url.QueryEscape("http://127.0.0.1:1") + "&debug=true", "debug"},
	} {
		code, body := getProbe(t, api, tc.query)
		if code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%q: %d %s, want 400 with %q", tc.query, code, body, tc.want)
		}
	}
	if got := testutil.ToFloat64(r.e.ProbeRequests().WithLabelValues("", "invalid")) + testutil.ToFloat64(r.e.ProbeRequests().WithLabelValues("default", "invalid")); got != 11 {
		t.Errorf("invalid requests counted %v, want 11", got)
	}
	// host:port alone is http.
	if code, body := getProbe(t, api, "target=127.0.0.1:1"); code != 200 || !strings.Contains(body, "vitals_probe_success 0") {
		t.Errorf("host:port: %d %s", code, body)
	}
}

// TestProbeOff: without probe.enabled there is no /probe.
func TestProbeOff(t *testing.T) {
	_, api := probeAPI(t, "")
	if code, body := getProbe(t, api, "target=127.0.0.1:1"); code != 404 || !strings.Contains(body, "probe.enabled") {
		t.Errorf("%d %s", code, body)
	}
}

// TestProbeTimeoutAndConcurrency: a probe ends within the scrape timeout
// Prometheus sends (less half a second), not the module's; and past
// probe.concurrency a probe waits for a place until its timeout, then is
// refused with 503.
func TestProbeTimeoutAndConcurrency(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	var once sync.Once
	defer once.Do(func() { close(release) })
	_, api := probeAPI(t, "probe: {enabled: true, concurrency: 1, modules: {default: {probes: [liveness], timeout: 30s}}}\n")

	// Held: the one place is taken until release.
	held := make(chan string, 1)
	go func() {
		_, body := getProbe(t, api, "target="+url.QueryEscape(hang.URL))
		held <- body
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first probe never reached the server")
	}
	start := time.Now()
	code, body := getProbe(t, api, "target="+url.QueryEscape(hang.URL), "X-Prometheus-Scrape-Timeout-Seconds", "1.5")
	if code != 503 || !strings.Contains(body, "probe.concurrency") {
		t.Errorf("second probe past concurrency 1: %d %s", code, body)
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("the refused probe waited %s, the scrape allowed 1.5s", waited)
	}
	once.Do(func() { close(release) })
	<-held

	// Alone now: the scrape's timeout (1.5s less 0.5s) ends the probe of
	// a server that never answers.
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer stall.Close()
	code, body = getProbe(t, api, "target="+url.QueryEscape(stall.URL), "X-Prometheus-Scrape-Timeout-Seconds", "1.5")
	wantLines(t, "timed out", body, "vitals_probe_success 0")
	if code != 200 || !strings.Contains(body, `vitals_probe_error{class="timeout",step="detect"} 1`) {
		t.Errorf("timed out: %d\n%s", code, body)
	}
	// A header past any timeout (or not a number) leaves the module's.
	for _, h := range []string{"+Inf", "1e300", "NaN", "-1", "soon"} {
		code, body := getProbe(t, api, "target="+url.QueryEscape(hang.URL), "X-Prometheus-Scrape-Timeout-Seconds", h)
		if code != 200 || !strings.Contains(body, "vitals_probe_success") || strings.Contains(body, `class="timeout"`) {
			t.Errorf("scrape timeout %q: %d\n%s", h, code, body)
		}
	}
	secs, _ := e2etest.ParseMetrics(t, []byte(body)).Value("vitals_probe_duration_seconds")
	if secs <= 0 || secs >= 30 {
		t.Errorf("probe took %vs, want the scrape's 1s, not the module's 30s", secs)
	}
}

// TestProbeModuleHTTPConfig: a module's http_config carries the
// credentials of a server that wants them, for detection and every check;
// a module without one reaches the same server unauthenticated, and says
// so.
func TestProbeModuleHTTPConfig(t *testing.T) {
	sim, vllm := simServer(t, probes.KindVLLM)
	sim.SetAPIKey("sk-probe")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("sk-probe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, api := probeAPI(t, fmt.Sprintf("probe:\n  enabled: true\n  modules:\n"+
		"    default: {probes: [liveness, readiness], timeout: 10s}\n"+
		"    keyed: {probes: [liveness, readiness, synthetic], timeout: 10s, http_config: {authorization: {credentials_file: %q}}}\n",
		filepath.Join(dir, "key")))

	code, body := getProbe(t, api, "module=keyed&kind=vllm&target="+url.QueryEscape(vllm))
	if code != 200 {
		t.Fatalf("keyed: %d %s", code, body)
	}
	wantLines(t, "keyed module", body,
		"vitals_probe_success 1",
		`vitals_probe_step_success{step="liveness"} 1`,
		`vitals_probe_step_success{step="readiness"} 1`,
		`vitals_probe_step_success{step="synthetic"} 1`,
	)

	code, body = getProbe(t, api, "kind=vllm&target="+url.QueryEscape(vllm))
	wantLines(t, "default module", body, "vitals_probe_success 0")
	if code != 200 || !strings.Contains(body, `class="auth"`) {
		t.Errorf("default module, no credentials: %d, want a failure of class auth:\n%s", code, body)
	}
}
