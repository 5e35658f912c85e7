package health_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/probestest"
)

// modelProcessSeries returns plugin id's vitals_ai_model_process_* series
// as name{model} -> value.
func modelProcessSeries(t *testing.T, e *health.Engine, id string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var plugin, model string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "plugin":
					plugin = l.GetValue()
				case "model":
					model = l.GetValue()
				}
			}
			if plugin != id {
				continue
			}
			switch mf.GetName() {
			case "vitals_ai_model_process_cpu_seconds_total":
				out[mf.GetName()+"{"+model+"}"] = m.GetCounter().GetValue()
			case "vitals_ai_model_process_resident_memory_bytes":
				out[mf.GetName()+"{"+model+"}"] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// An Ollama server's runner processes are exported by the model each
// runs, matched by its --model blob's digest to the blob /api/show names
// for a model /api/ps lists (not /api/ps's manifest digest); a runner without
// --model is exported with model="". Their series go with the server.
func TestOllamaRunnersAttributedToModels(t *testing.T) {
	_, srv := sim(t, probes.KindOllama, 1)
	pid, stop := probestest.StartFakeOllama(t, aisim.BlobDigest("tiny:latest"))
	cfg := fastConfig()
	cfg.Synthetic = false
	r := newRig(t, cfg)
	tg := target("o", probes.KindOllama, srv.URL)
	tg.PID = pid
	r.e.Upsert(tg)
	r.await("o", "checked once", func(vs []health.Status) bool { return len(vs) >= 1 })
	got := modelProcessSeries(t, r.e, "o")
	for _, model := range []string{"tiny:latest", ""} {
		if got["vitals_ai_model_process_resident_memory_bytes{"+model+"}"] <= 0 {
			t.Errorf("no resident memory series of model %q's runner: %v", model, got)
		}
		if _, ok := got["vitals_ai_model_process_cpu_seconds_total{"+model+"}"]; !ok {
			t.Errorf("no CPU series of model %q's runner: %v", model, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("series %v, want 4 (cpu and rss of two runners)", got)
	}
	stop()
	r.mu.Lock()
	seen := len(r.verdicts["o"])
	r.mu.Unlock()
	r.await("o", "checked twice after the server ended", func(vs []health.Status) bool { return len(vs) >= seen+2 })
	if got := modelProcessSeries(t, r.e, "o"); len(got) != 0 {
		t.Errorf("series %v of runners that are gone, want none", got)
	}
}
