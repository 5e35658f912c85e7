package health_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// An OpenAI-compatible server with no /metrics (404) is asked for its
// signals once, not at every check, and asked again once five minutes have
// passed; a server that serves them is read at every check.
func TestNoSignalsEndpointNotAskedEveryCheck(t *testing.T) {
	s, err := aisim.New(aisim.Config{Kind: aisim.KindSGLang})
	if err != nil {
		t.Fatal(err)
	}
	s.SetMetricsOff(true) // SGLang without --enable-metrics: /metrics is a 404
	var metricsReqs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metricsReqs.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	cfg := fastConfig()
	cfg.Synthetic = false
	clk := &offsetClock{}
	r := newRig(t, cfg, func(o *health.Options) { o.Clock = clk })
	r.e.Upsert(target("gw", probes.KindOpenAI, srv.URL))
	vs := r.await("gw", "10 checks", func(vs []health.Status) bool { return len(vs) >= 10 })
	if last := vs[len(vs)-1]; last.State != health.StateHealthy {
		t.Fatalf("state %s (%s), want healthy: no /metrics is no failure", last.State, last.Reason)
	}
	if n := metricsReqs.Load(); n != 1 {
		t.Errorf("/metrics asked %d times in %d checks, want once", n, len(vs))
	}
	if got := series(t, r.e, "vitals_ai_signals_errors_total", "class"); len(got) != 0 {
		t.Errorf("a server without /metrics counted as failed signal reads: %v", got)
	}

	// The server restarts with metrics on; five minutes later the agent
	// asks again, and from then on at every check.
	s.SetMetricsOff(false)
	clk.add(5*time.Minute + time.Second)
	before, n0 := len(vs), metricsReqs.Load()
	vs = r.await("gw", "10 more checks", func(vs []health.Status) bool { return len(vs) >= before+10 })
	if n := metricsReqs.Load() - n0; n < 9 {
		t.Errorf("/metrics asked %d times in %d checks after it came back, want at every check", n, len(vs)-before)
	}
	r.await("gw", "signals read", func([]health.Status) bool {
		_, ok := series(t, r.e, "vitals_ai_requests_running", "")[""]
		return ok
	})
}
