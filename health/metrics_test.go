package health

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vitals-dev/vitals/probes"
	"go.opentelemetry.io/otel/trace"
)

// TestProbeTotalHasBothResults checks that a successful probe also creates
// its failure series at 0, and a synthetic one the stuck error class: the
// first failure that follows is then an increase that Prometheus'
// increase() sees, which the stuck alert needs.
func TestProbeTotalHasBothResults(t *testing.T) {
	m := NewMetrics()
	m.observe("llm", Observation{Probes: []ProbeOutcome{{Probe: probes.Synthetic, OK: true, Attempts: 1}}}, trace.SpanContext{})
	want := `
# HELP vitals_ai_probe_total AI plugin probes run, by probe and result (success, failure).
# TYPE vitals_ai_probe_total counter
vitals_ai_probe_total{plugin="llm",probe="synthetic",result="failure"} 0
vitals_ai_probe_total{plugin="llm",probe="synthetic",result="success"} 1
`
	if err := testutil.CollectAndCompare(m.total, strings.NewReader(want), "vitals_ai_probe_total"); err != nil {
		t.Error(err)
	}
	want = `
# HELP vitals_ai_probe_errors_total Failed AI plugin probe requests, by error class (timeout, refused, reset, http_5xx, http_4xx, bad_response, tls, dns, canceled, stuck, not_ready, stale, reported, other).
# TYPE vitals_ai_probe_errors_total counter
vitals_ai_probe_errors_total{class="stuck",plugin="llm"} 0
`
	if err := testutil.CollectAndCompare(m.errors, strings.NewReader(want), "vitals_ai_probe_errors_total"); err != nil {
		t.Error(err)
	}
}
