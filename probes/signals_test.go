package probes_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/hf"
	"github.com/vitals-dev/vitals/probes/kserve"
	"github.com/vitals-dev/vitals/probes/llamacpp"
	"github.com/vitals-dev/vitals/probes/openai"
)

// table is a small table with one source of each kind, for the decoder's
// rules.
var table = probes.SignalTable{
	Engine:  "test",
	Running: []probes.Source{{Names: []string{"run"}}},
	Waiting: []probes.Source{
		{Names: []string{"queue"}},
		{Names: []string{"backend"}, Match: map[string]string{"type": "waiting"}},
	},
	KVCacheUsage:    []probes.Source{{Names: []string{"kv_new", "kv_old"}, Scale: 0.5}},
	GeneratedTokens: []probes.Source{{Names: []string{"tokens"}}},
	Requests: []probes.RequestSource{
		{Source: probes.Source{Names: []string{"ok_total"}}, Result: probes.RequestSuccess},
		{Source: probes.Source{Names: []string{"bad_total"}}, Result: probes.RequestFailure,
			ResultLabel: "reason", Results: map[string]probes.RequestResult{"CANCELED": probes.RequestCanceled}},
	},
}

func TestDecodeRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want probes.Signals
	}{{
		name: "nothing the table knows",
		body: "# TYPE other gauge\nother 3\n",
		want: probes.Signals{Engine: "test"},
	}, {
		name: "a zero is reported, an absent series is not",
		body: "# TYPE run gauge\nrun 0\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsRunning},
	}, {
		name: "label sets add up",
		body: "# TYPE run gauge\nrun{engine=\"0\"} 3\nrun{engine=\"1\"} 2\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsRunning, RequestsRunning: 5},
	}, {
		name: "sources of one signal add up, matched on labels",
		body: "# TYPE queue gauge\nqueue 4\n# TYPE backend gauge\nbackend{type=\"waiting\"} 2\nbackend{type=\"active\"} 9\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsWaiting, RequestsWaiting: 6},
	}, {
		name: "a source whose samples all fail the match is not reported",
		body: "# TYPE backend gauge\nbackend{type=\"active\"} 9\n",
		want: probes.Signals{Engine: "test"},
	}, {
		name: "the new name wins over the old one, scaled, the fullest cache",
		body: "# TYPE kv_new gauge\nkv_new{engine=\"0\"} 0.8\nkv_new{engine=\"1\"} 1.4\n# TYPE kv_old gauge\nkv_old 99\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldKVCacheUsage, KVCacheUsage: 0.7},
	}, {
		name: "the old name alone is read",
		body: "# TYPE kv_old gauge\nkv_old 0.5\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldKVCacheUsage, KVCacheUsage: 0.25},
	}, {
		name: "a histogram gives its sum",
		body: "# TYPE tokens histogram\ntokens_bucket{le=\"10\"} 1\ntokens_bucket{le=\"+Inf\"} 2\ntokens_sum 42\ntokens_count 2\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldGeneratedTokens, GeneratedTokens: 42},
	}, {
		name: "a declared counter without samples is a zero",
		body: "# HELP tokens Generated tokens.\n# TYPE tokens counter\n# TYPE ok_total counter\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldGeneratedTokens | probes.FieldRequests, Requests: map[probes.RequestResult]float64{}},
	}, {
		name: "a declared gauge without samples is not reported",
		body: "# HELP run Running.\n# TYPE run gauge\n",
		want: probes.Signals{Engine: "test"},
	}, {
		name: "NaN and infinite samples are skipped",
		body: "# TYPE run gauge\nrun{a=\"1\"} NaN\nrun{a=\"2\"} +Inf\nrun{a=\"3\"} 1\n# TYPE queue gauge\nqueue NaN\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsRunning, RequestsRunning: 1},
	}, {
		name: "requests by result, from a label",
		body: "# TYPE ok_total counter\nok_total{model=\"a\"} 5\nok_total{model=\"b\"} 6\n# TYPE bad_total counter\n" +
			"bad_total{reason=\"BACKEND\"} 2\nbad_total{reason=\"OTHER\"} 1\nbad_total{reason=\"CANCELED\"} 3\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequests,
			Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 11, probes.RequestFailure: 3, probes.RequestCanceled: 3}},
	}, {
		name: "a bad line of another family is not read",
		body: "python_info{implementation=\"CPython\" 1\n# TYPE run gauge\nrun 2\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsRunning, RequestsRunning: 2},
	}, {
		name: "a name ending in _count is its own family",
		body: "# TYPE ok_total_count counter\nok_total_count 4\n# TYPE run_count gauge\nrun_count 9\n",
		want: probes.Signals{Engine: "test"},
	}, {
		name: "untyped samples count",
		body: "run 2\ntokens 7\n",
		want: probes.Signals{Engine: "test", Reported: probes.FieldRequestsRunning | probes.FieldGeneratedTokens, RequestsRunning: 2, GeneratedTokens: 7},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := table.Decode([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want []string
	}{
		{"a bad line names its number", []byte("# TYPE run gauge\nrun 1\nrun{a=\"1\" 2\n"), []string{"decode test /metrics", "line 3"}},
		{"a value that is not a number", []byte("run one\n"), []string{"decode test /metrics", "line 1"}},
		{"two TYPE lines", []byte("# TYPE run gauge\n# TYPE run counter\n"), []string{"line 2"}},
		{"the line is the body's, not the kept lines'", []byte("a 1\nb 2\n# HELP c C.\nrun{x=\"1\" 2\n"), []string{"line 4"}},
		{"too large", []byte(strings.Repeat("x", probes.MaxMetricsBytes+1)), []string{"decode test /metrics", "too large"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := table.Decode(tc.body)
			var de *probes.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *DecodeError", err)
			}
			if probes.Classify(err) != probes.ClassBadResponse {
				t.Fatalf("class %s, want bad_response", probes.Classify(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
		})
	}
	_, err := table.Decode([]byte(strings.Repeat("x", probes.MaxMetricsBytes+1)))
	if !errors.Is(err, probes.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestSignalsHasAndMerge(t *testing.T) {
	metrics := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldRequestsRunning | probes.FieldGeneratedTokens, RequestsRunning: 2, GeneratedTokens: 10}
	slots := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldSlots | probes.FieldRequestsRunning, SlotsBusy: 3, SlotsIdle: 1, RequestsRunning: 99}
	got := metrics.Merge(slots)
	want := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldRequestsRunning | probes.FieldGeneratedTokens | probes.FieldSlots,
		RequestsRunning: 2, GeneratedTokens: 10, SlotsBusy: 3, SlotsIdle: 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merge: got %+v, want %+v", got, want)
	}
	if !got.Has(probes.FieldSlots|probes.FieldGeneratedTokens) || got.Has(probes.FieldKVCacheUsage) || got.Has(0) {
		t.Fatalf("Has is wrong for %v", got.Reported)
	}
	if s := (probes.Signals{}).Merge(slots); s.Engine != probes.EngineLlamaCpp || s.RequestsRunning != 99 {
		t.Fatalf("merge into nothing: %+v", s)
	}
	if s := got.Reported.String(); s != "requests_running|generated_tokens|slots" {
		t.Fatalf("String() = %q", s)
	}
	if s := probes.Field(0).String(); s != "none" {
		t.Fatalf("String() = %q", s)
	}
}

// engineBodies are the /metrics testdata of every family, by the engine
// that wrote them.
var engineBodies = map[string]probes.Engine{
	"openai/testdata/signals-vllm.txt":          probes.EngineVLLM,
	"openai/testdata/signals-vllm-0.8.txt":      probes.EngineVLLM,
	"openai/testdata/signals-sglang.txt":        probes.EngineSGLang,
	"llamacpp/testdata/signals-llamacpp.txt":    probes.EngineLlamaCpp,
	"testdata/peers/llamacpp/metrics.txt":       probes.EngineLlamaCpp,
	"hf/testdata/signals-tgi.txt":               probes.EngineTGI,
	"hf/testdata/signals-tei.txt":               probes.EngineTEI,
	"kserve/testdata/signals-triton.txt":        probes.EngineTriton,
	"kserve/testdata/signals-triton-vllm.txt":   probes.EngineTriton,
	"llamacpp/testdata/signals-llamacpp-kv.txt": probes.EngineLlamaCpp,
}

func readBody(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFingerprint(t *testing.T) {
	for name, want := range engineBodies {
		if _, err := os.Stat(filepath.FromSlash(name)); errors.Is(err, os.ErrNotExist) {
			continue // that family's testdata has not landed yet
		}
		t.Run(name, func(t *testing.T) {
			if es, _ := engines.Registry().Fingerprint(readBody(t, name)); es.Table.Engine != want {
				t.Fatalf("Fingerprint = %q, want %q", es.Table.Engine, want)
			}
		})
	}
	for _, tc := range []struct {
		name, body string
		want       probes.Engine
	}{
		{"empty", "", probes.EngineUnknown},
		{"another exporter", "# TYPE node_load1 gauge\nnode_load1 0.5\ngo_goroutines 7\n", probes.EngineUnknown},
		{"Ollama's 404 page", "404 page not found", probes.EngineUnknown},
		{"Triton hosting vLLM", "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\nvllm:num_requests_waiting 0\n" +
			"# TYPE nv_inference_request_success counter\nnv_inference_request_success{model=\"m\",version=\"1\"} 3\n", probes.EngineTriton},
		{"most families win", "tgi_queue_size 1\n# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs 1\nsglang:num_queue_reqs 0\n", probes.EngineSGLang},
		{"a bad line does not hide the prefix", "llamacpp:requests_processing one\n", probes.EngineLlamaCpp},
		{"histogram suffixes are one family", "te_a_bucket{le=\"1\"} 1\nte_a_sum 1\nte_a_count 1\ntgi_b 1\ntgi_c 1\n", probes.EngineTGI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if es, _ := engines.Registry().Fingerprint([]byte(tc.body)); es.Table.Engine != tc.want {
				t.Fatalf("Fingerprint = %q, want %q", es.Table.Engine, tc.want)
			}
			if got := probes.Fingerprint([]byte(tc.body), realTables()...); got != tc.want {
				t.Fatalf("Fingerprint over the tables = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFetchMetrics(t *testing.T) {
	var accept string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		_, _ = w.Write([]byte("# TYPE run gauge\nrun 1\n"))
	})
	mux.HandleFunc("GET /huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("# padding line\n", 4096))
		for n := 0; n <= probes.MaxMetricsBytes; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	b, err := probes.FetchMetrics(ctx, srv.Client(), srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(accept, "text/plain") {
		t.Fatalf("Accept = %q, want the text format", accept)
	}
	if s, err := table.Decode(b); err != nil || s.RequestsRunning != 1 {
		t.Fatalf("decode: %+v, %v", s, err)
	}

	_, err = probes.FetchMetrics(ctx, srv.Client(), srv.URL+"/missing")
	var he *probes.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("err = %v, want an HTTP 404", err)
	}
	_, err = probes.FetchMetrics(ctx, srv.Client(), srv.URL+"/huge")
	if !errors.Is(err, probes.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// FuzzSignalsDecode feeds the decoder and the fingerprint any body; seeds
// are every family's testdata. What it decodes must be finite and name
// only known fields.
func FuzzSignalsDecode(f *testing.F) {
	for name := range engineBodies {
		if b, err := os.ReadFile(filepath.FromSlash(name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("# TYPE run gauge\nrun{engine=\"0\"} 3\nkv_new 40\nok_total{reason=\"x\"} 1\n"))
	f.Add([]byte("# TYPE tokens histogram\ntokens_bucket{le=\"+Inf\"} 2\ntokens_sum 42\ntokens_count 2\n"))
	f.Add([]byte("run NaN\n"))
	all := probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage |
		probes.FieldGeneratedTokens | probes.FieldRequests | probes.FieldLoadedModels | probes.FieldSlots | probes.FieldAsleep
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = engines.Registry().Fingerprint(b)
		for _, tt := range append(realTables(), table) {
			checkDecode(t, tt, b, all)
		}
	})
}

// realTables are every family's tables.
func realTables() []probes.SignalTable {
	return []probes.SignalTable{openai.VLLMSignals, openai.SGLangSignals, llamacpp.MetricsSignals,
		hf.TGISignals, hf.TEISignals, kserve.TritonSignals}
}

// checkDecode decodes b with tt: what it decodes must be finite, name only
// fields of /metrics, and be what decoding the whole body gives whenever
// the whole body parses.
func checkDecode(t *testing.T, tt probes.SignalTable, b []byte, all probes.Field) {
	t.Helper()
	s, err := tt.Decode(b)
	if whole, werr := probes.DecodeWhole(tt, b); werr == nil {
		if err != nil {
			t.Fatalf("%s: the whole body parses, the kept lines fail: %v", tt.Engine, err)
		}
		if !reflect.DeepEqual(s, whole) {
			t.Fatalf("%s: kept lines give %+v, the whole body %+v", tt.Engine, s, whole)
		}
	}
	if err != nil {
		var de *probes.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("error %v is not a *DecodeError", err)
		}
		return
	}
	if s.Reported&^all != 0 || s.Has(probes.FieldLoadedModels) || s.Has(probes.FieldSlots) {
		t.Fatalf("reported %v from /metrics", s.Reported)
	}
	for _, v := range []float64{s.RequestsRunning, s.RequestsWaiting, s.KVCacheUsage, s.GeneratedTokens, s.Asleep} {
		if math.IsNaN(v) {
			t.Fatalf("NaN in %+v", s)
		}
	}
	if (s.Requests != nil) != s.Has(probes.FieldRequests) {
		t.Fatalf("requests %v with reported %v", s.Requests, s.Reported)
	}
}
