package extmanager_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

type readyAnswer struct {
	code   int
	ctype  string
	body   string
	fields map[string]any
}

func getReady(t *testing.T, base, id, query string) readyAnswer {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/ai-plugins/" + id + "/ready" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := readyAnswer{code: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: string(b)}
	if strings.HasPrefix(a.ctype, "application/json") {
		if err := json.Unmarshal(b, &a.fields); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	return a
}

// TestReadyFollowsHealth: an AI plugin's readiness endpoint is 503 until a
// check has judged it, 200 while it is healthy, and 503 with its state and
// the failed probe's reason once its server stops answering; 404 for an id
// the catalog does not know. ?verbose answers one line of text.
func TestReadyFollowsHealth(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the first check until the test has seen the plugin unjudged.
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { sim.Close(); srv.Close() })
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(gate)
		}
	}
	t.Cleanup(open)

	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\n"+
		"detection: {attempts: 1, timeout: 10s}\n"+
		"health: {interval: 50ms, unhealthy_interval: 50ms, timeout: 1s, retries: 0, start_spread: 0, jitter: 0, failure_threshold: 2, success_threshold: 1}\n"+
		"targets: [{id: llm, endpoint: %q}]\n", srv.URL))
	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	api := httptest.NewServer(mux)
	defer api.Close()

	if a := getReady(t, api.URL, "nope", ""); a.code != 404 || !strings.Contains(a.body, `unknown AI plugin \"nope\"`) {
		t.Errorf("unknown id: %d %s", a.code, a.body)
	}
	agenttest.Eventually(t, 5*time.Second, "llm in the catalog", func() bool {
		_, ok := r.e.Catalog().Get("llm")
		return ok
	})
	a := getReady(t, api.URL, "llm", "")
	if a.code != 503 || a.fields["ready"] != false || a.fields["state"] != "unknown" || a.fields["reason"] != "no health check has finished yet" {
		t.Errorf("before any check: %d %s", a.code, a.body)
	}

	open()
	agenttest.Eventually(t, 15*time.Second, "llm ready", func() bool {
		return getReady(t, api.URL, "llm", "").code == 200
	})
	a = getReady(t, api.URL, "llm", "")
	if a.fields["ready"] != true || a.fields["state"] != "healthy" || a.fields["id"] != "llm" || a.fields["checked"] == nil {
		t.Errorf("healthy: %d %s", a.code, a.body)
	}
	if a := getReady(t, api.URL, "llm", "?verbose"); a.code != 200 || !strings.HasPrefix(a.ctype, "text/plain") || a.body != "llm ready: healthy: liveness and readiness passed\n" {
		t.Errorf("verbose healthy: %d %q %q", a.code, a.ctype, a.body)
	}

	if err := sim.Update(func(k *aisim.Knobs) { k.Down = true }); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 15*time.Second, "llm not ready", func() bool {
		return getReady(t, api.URL, "llm", "").code == 503
	})
	a = getReady(t, api.URL, "llm", "")
	if a.fields["ready"] != false || a.fields["state"] != "unhealthy" || a.fields["reason"] == "" {
		t.Errorf("down: %d %s", a.code, a.body)
	}
	v := getReady(t, api.URL, "llm", "?verbose")
	if v.code != 503 || !strings.HasPrefix(v.body, "llm not ready: unhealthy: ") || strings.Count(v.body, "\n") != 1 {
		t.Errorf("verbose down: %d %q", v.code, v.body)
	}
}

// TestReadyWithoutHealthChecks: with health checks off, a server's
// readiness says it is not checked instead of calling it ready.
func TestReadyWithoutHealthChecks(t *testing.T) {
	_, url := simServer(t, probes.KindLlamaCpp)
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\ntargets: [{id: llm, endpoint: %q}]\n", url))
	r.awaitDetected("llm")
	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	api := httptest.NewServer(mux)
	defer api.Close()
	a := getReady(t, api.URL, "llm", "")
	if a.code != 503 || a.fields["state"] != "unknown" || !strings.Contains(a.body, "health checks are off") {
		t.Errorf("%d %s", a.code, a.body)
	}
}
