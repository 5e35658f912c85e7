package engines_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// metricsBodies are recorded or written /metrics bodies of every engine
// a family registers (the families' testdata).
var metricsBodies = map[probes.Engine]string{
	probes.EngineVLLM:     "../openai/testdata/signals-vllm.txt",
	probes.EngineSGLang:   "../openai/testdata/signals-sglang.txt",
	probes.EngineLlamaCpp: "../llamacpp/testdata/signals-llamacpp.txt",
	probes.EngineTGI:      "../hf/testdata/signals-tgi.txt",
	probes.EngineTEI:      "../hf/testdata/signals-tei.txt",
	probes.EngineTriton:   "../kserve/testdata/signals-triton-vllm.txt",
}

// metricsOnly is a server that answers nothing but GET /metrics, with
// body: a gateway that routes no engine's API questions. It counts the
// requests to /metrics.
func metricsOnly(t *testing.T, body []byte) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// A server whose API answers no family but whose /metrics has an
// engine's series is identified as that engine's kind, for every engine
// a family registers, and its signals are read with that engine's table.
func TestDetectFromMetrics(t *testing.T) {
	reg := engines.Registry()
	if len(reg.Engines()) == 0 {
		t.Fatal("no family registers an engine")
	}
	for _, es := range reg.Engines() {
		e := es.Table.Engine
		t.Run(string(e), func(t *testing.T) {
			name, ok := metricsBodies[e]
			if !ok {
				t.Fatalf("engine %q has no /metrics body in metricsBodies", e)
			}
			body, err := os.ReadFile(filepath.FromSlash(name))
			if err != nil {
				t.Fatal(err)
			}
			url, reads := metricsOnly(t, body)
			d, err := reg.Detect(context.Background(), client(t), url, opts(new(noSleep)))
			if err != nil || d.Kind != es.Kind || !d.FromMetrics || d.Server != string(e) {
				t.Fatalf("got %+v, %v; want kind %s from its metrics", d, err, es.Kind)
			}
			if n := reads.Load(); n != 1 {
				t.Fatalf("detection read /metrics %d times, want once", n)
			}
			sig, err := reg.Probes(d.Kind).Signals(context.Background(), client(t), probes.Target{BaseURL: url, Kind: d.Kind})
			if err != nil || sig.Engine != e || !sig.Has(probes.FieldRequestsWaiting) {
				t.Fatalf("signals of the %s kind: %+v, %v; want %s's, with its queue", d.Kind, sig, err, e)
			}
		})
	}
}

// Triton's metrics on a port of their own are read where the target's
// metrics_url says.
func TestDetectFromMetricsURL(t *testing.T) {
	body, err := os.ReadFile(filepath.FromSlash(metricsBodies[probes.EngineTriton]))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := metricsOnly(t, body)
	api := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(api.Close)
	o := opts(new(noSleep))
	o.MetricsURL = metrics + "/metrics"
	d, err := engines.Registry().Detect(context.Background(), client(t), api.URL, o)
	if err != nil || d.Kind != probes.KindKServe || !d.FromMetrics {
		t.Fatalf("got %+v, %v; want kserve from its metrics_url", d, err)
	}
}

// A server whose API answers no family and whose /metrics names no
// engine stays unknown, with a reason that says both and what to set.
func TestDetectUnknownMetrics(t *testing.T) {
	exporter, _ := metricsOnly(t, []byte("# TYPE node_load1 gauge\nnode_load1 0.5\n# TYPE go_goroutines gauge\ngo_goroutines 7\n"))
	none := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(none.Close)
	for _, tc := range []struct {
		name, url, says string
	}{
		{"unknown prefixes", exporter, "has no known engine prefix (nv_inference_, nv_trt_llm_, tgi_, te_, llamacpp:, vllm:, sglang:)"},
		{"no metrics", none.URL, "its metrics could not be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), tc.url, opts(&s))
			if err != nil || d.Kind != probes.KindUnknown || d.FromMetrics {
				t.Fatalf("got %+v, %v; want unknown", d, err)
			}
			for _, want := range []string{"kind not identified: no known AI API answered", "/v1/models", tc.says, "set kind:"} {
				if !strings.Contains(d.Reason, want) {
					t.Fatalf("reason %q does not say %q", d.Reason, want)
				}
			}
			if len(s.got()) != 0 {
				t.Fatalf("retried an unknown server: %v", s.got())
			}
		})
	}
}

// A configured kind is not second-guessed from the metrics.
func TestDetectKindNotFromMetrics(t *testing.T) {
	body, err := os.ReadFile(filepath.FromSlash(metricsBodies[probes.EngineTGI]))
	if err != nil {
		t.Fatal(err)
	}
	url, reads := metricsOnly(t, body)
	o := opts(new(noSleep))
	o.Kind = probes.KindOllama
	d, _ := engines.Registry().Detect(context.Background(), client(t), url, o)
	if d.Kind != probes.KindUnknown || reads.Load() != 0 {
		t.Fatalf("got %+v after %d reads of /metrics; want unknown, metrics unread", d, reads.Load())
	}
}

// A server only the generic family recognised (a gateway's /v1/models)
// is of the kind its metrics name when that kind's own liveness answers,
// and stays generic otherwise.
func TestDetectGenericRefined(t *testing.T) {
	vllm, err := os.ReadFile(filepath.FromSlash(metricsBodies[probes.EngineVLLM]))
	if err != nil {
		t.Fatal(err)
	}
	sglang, err := os.ReadFile(filepath.FromSlash(metricsBodies[probes.EngineSGLang]))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		metrics     []byte
		health      bool
		want        probes.Kind
		fromMetrics bool
	}{
		{"vLLM with its /health", vllm, true, probes.KindVLLM, true},
		{"vLLM without /health", vllm, false, probes.KindOpenAI, false},
		{"SGLang", sglang, true, probes.KindOpenAI, false},
		{"no metrics", nil, true, probes.KindOpenAI, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"m","object":"model","owned_by":"gateway"}]}`))
			})
			if tc.metrics != nil {
				mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(tc.metrics) })
			}
			if tc.health {
				mux.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
			}
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			o := opts(new(noSleep))
			o.NoTests = true
			d, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, o)
			if err != nil || d.Kind != tc.want || d.FromMetrics != tc.fromMetrics || len(d.Models) != 1 {
				t.Fatalf("got %+v, %v; want %s (from metrics %v) with the model listed", d, err, tc.want, tc.fromMetrics)
			}
		})
	}
}

// The registry refuses engines it could not fingerprint apart.
func TestRegistryEngines(t *testing.T) {
	live := probes.ProbeFunc(func(context.Context, *http.Client, probes.Target, probes.Config) (probes.Result, error) {
		return probes.Result{}, nil
	})
	fam := func(name string, k probes.Kind, es ...probes.EngineSignals) probes.Family {
		return probes.Family{
			Name: name, Kinds: []probes.Kind{k},
			Detect: func(context.Context, *http.Client, string, probes.DetectOptions) (probes.Detection, error) {
				return probes.Detection{}, probes.ErrNoMatch
			},
			Probes:  func(probes.Kind) probes.ProbeSet { return probes.ProbeSet{Liveness: live} },
			Engines: es,
		}
	}
	tgi := probes.SignalTable{Engine: probes.EngineTGI, Prefixes: []string{"tgi_"}}
	for _, tc := range []struct {
		name string
		fams []probes.Family
		want string
	}{
		{"kind not the family's", []probes.Family{fam("a", probes.KindTGI, probes.EngineSignals{Kind: probes.KindTEI, Table: tgi})}, "not the family's"},
		{"no prefixes", []probes.Family{fam("a", probes.KindTGI, probes.EngineSignals{Kind: probes.KindTGI, Table: probes.SignalTable{Engine: probes.EngineTGI}})}, "needs an Engine name and Prefixes"},
		{"engine twice", []probes.Family{fam("a", probes.KindTGI, probes.EngineSignals{Kind: probes.KindTGI, Table: tgi}),
			fam("b", probes.KindTEI, probes.EngineSignals{Kind: probes.KindTEI, Table: tgi})}, "registered twice"},
		{"prefix twice", []probes.Family{fam("a", probes.KindTGI, probes.EngineSignals{Kind: probes.KindTGI, Table: tgi}),
			fam("b", probes.KindTEI, probes.EngineSignals{Kind: probes.KindTEI, Table: probes.SignalTable{Engine: probes.EngineTEI, Prefixes: []string{"tgi_"}}})}, `prefix "tgi_" is already engine "tgi"'s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := probes.NewRegistry(tc.fams...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Every engine of the shipped registry has its own prefixes.
	seen := map[string]probes.Engine{}
	for _, es := range engines.Registry().Engines() {
		for _, p := range es.Table.Prefixes {
			if o, ok := seen[p]; ok {
				t.Errorf("prefix %q of %s and %s", p, o, es.Table.Engine)
			}
			seen[p] = es.Table.Engine
		}
	}
	if _, ok := engines.Registry().Fingerprint([]byte("go_goroutines 1\n")); ok {
		t.Error("a Go process's metrics fingerprinted as an engine")
	}
}
