package probes_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/hf"
	"github.com/vitals-dev/vitals/probes/kserve"
	"github.com/vitals-dev/vitals/probes/llamacpp"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/openai"
)

// TestSignalsOfAisim reads the simulator's /metrics of every kind that has
// them with that engine's table: the fingerprint names the engine and the
// signals the engine has are reported. It keeps the simulator and the
// tables speaking of the same series.
func TestSignalsOfAisim(t *testing.T) {
	gauges := probes.FieldRequestsRunning | probes.FieldRequestsWaiting
	for _, tc := range []struct {
		kind    probes.Kind
		version string
		table   probes.SignalTable
		triton  bool
		want    probes.Field
	}{
		{kind: probes.KindVLLM, table: openai.VLLMSignals, want: gauges | probes.FieldKVCacheUsage | probes.FieldGeneratedTokens | probes.FieldRequests},
		{kind: probes.KindVLLM, version: "0.10.2", table: openai.VLLMSignals, want: gauges | probes.FieldKVCacheUsage | probes.FieldGeneratedTokens | probes.FieldRequests},
		{kind: probes.KindVLLM, version: "0.11.0", table: openai.VLLMSignals, want: gauges | probes.FieldKVCacheUsage | probes.FieldGeneratedTokens | probes.FieldRequests | probes.FieldAsleep},
		{kind: aisim.KindSGLang, table: openai.SGLangSignals, want: gauges | probes.FieldKVCacheUsage | probes.FieldGeneratedTokens | probes.FieldRequests},
		{kind: probes.KindLlamaCpp, table: llamacpp.MetricsSignals, want: gauges | probes.FieldGeneratedTokens},
		{kind: probes.KindTGI, table: hf.TGISignals, want: gauges | probes.FieldGeneratedTokens | probes.FieldRequests},
		{kind: probes.KindTEI, table: hf.TEISignals, want: probes.FieldRequestsWaiting | probes.FieldRequests},
		{kind: probes.KindKServe, table: kserve.TritonSignals, triton: true, want: probes.FieldRequestsWaiting | probes.FieldRequests},
	} {
		t.Run(string(tc.kind)+tc.version, func(t *testing.T) {
			sim, err := aisim.New(aisim.Config{Kind: tc.kind, Version: tc.version})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			var h http.Handler = sim
			if tc.triton {
				h = sim.MetricsHandler()
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			b, err := probes.FetchMetrics(context.Background(), srv.Client(), srv.URL+"/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != tc.table.Engine {
				t.Fatalf("Fingerprint = %q, want %q", es.Table.Engine, tc.table.Engine)
			}
			s, err := tc.table.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Has(tc.want) {
				t.Fatalf("reported %v, want at least %v, from\n%s", s.Reported, tc.want, b)
			}
		})
	}
}

// TestLoadedModelsAndSlotsOfAisim decodes the simulator's Ollama /api/ps
// and llama.cpp /slots.
func TestLoadedModelsAndSlotsOfAisim(t *testing.T) {
	for _, tc := range []struct {
		kind   probes.Kind
		path   string
		decode func([]byte) (probes.Signals, error)
		want   probes.Field
	}{
		{probes.KindOllama, "/api/ps", ollama.DecodePSSignals, probes.FieldLoadedModels},
		{probes.KindLlamaCpp, "/slots", llamacpp.DecodeSlotsSignals, probes.FieldSlots},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			sim, err := aisim.New(aisim.Config{Kind: tc.kind})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			srv := httptest.NewServer(sim)
			defer srv.Close()
			b, err := probes.Fetch(context.Background(), srv.Client(), http.MethodGet, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := tc.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if s.Reported != tc.want {
				t.Fatalf("reported %v, want %v", s.Reported, tc.want)
			}
		})
	}
}

// TestAsleepOfAisim puts the simulated vLLM to sleep and reads it from its
// /metrics, then wakes it.
func TestAsleepOfAisim(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindVLLM, Version: "0.11.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	srv := httptest.NewServer(sim)
	defer srv.Close()
	read := func() probes.Signals {
		t.Helper()
		b, err := probes.FetchMetrics(context.Background(), srv.Client(), srv.URL+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		s, err := openai.VLLMSignals.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := read(); !s.Has(probes.FieldAsleep) || s.Asleep != 0 {
		t.Fatalf("awake: asleep %v, reported %v", s.Asleep, s.Reported)
	}
	for _, level := range []int{1, 2} {
		sim.SetSleepLevel(level)
		if s := read(); s.Asleep != 1 {
			t.Fatalf("sleep level %d: asleep %v", level, s.Asleep)
		}
	}
	sim.SetSleepLevel(0)
	if s := read(); s.Asleep != 0 {
		t.Fatalf("woken: asleep %v", s.Asleep)
	}
}
