package kserve_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/kserve"
)

// TestTritonSignals reads a Triton serving an ONNX model and a
// TensorRT-LLM one: waiting adds the core's pending requests to the
// backend's queue, running and the KV cache come from the backend.
func TestTritonSignals(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "signals-triton.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := kserve.TritonSignals.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := probes.Signals{
		Engine:          probes.EngineTriton,
		Reported:        probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage | probes.FieldRequests,
		RequestsRunning: 7, RequestsWaiting: 2 + 0 + 3, KVCacheUsage: 0.6,
		Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 700 + 300, probes.RequestFailure: 2 + 1, probes.RequestCanceled: 4},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != probes.EngineTriton {
		t.Fatalf("Fingerprint = %q", es.Table.Engine)
	}
}

// TestTritonWithoutTensorRTLLM is Triton's core alone, as in the example
// of docs/user_guide/metrics.md: no running gauge nor KV cache, and a
// failure counter without a reason label.
func TestTritonWithoutTensorRTLLM(t *testing.T) {
	body := `# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="my_model",version="1"} 161
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="my_model",version="1"} 2
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="my_model",version="1"} 0
`
	got, err := kserve.TritonSignals.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := probes.Signals{
		Engine:   probes.EngineTriton,
		Reported: probes.FieldRequestsWaiting | probes.FieldRequests,
		Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 161, probes.RequestFailure: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// TestTritonWithVLLM is Triton with a vLLM backend that reports vLLM's
// metrics (the example of the vllm_backend README): the generated tokens
// come from vLLM's counter, and the fingerprint is Triton's.
func TestTritonWithVLLM(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "signals-triton-vllm.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := kserve.TritonSignals.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := probes.Signals{
		Engine:          probes.EngineTriton,
		Reported:        probes.FieldRequestsWaiting | probes.FieldGeneratedTokens | probes.FieldRequests,
		GeneratedTokens: 1917,
		Requests:        map[probes.RequestResult]float64{probes.RequestSuccess: 12, probes.RequestFailure: 0, probes.RequestCanceled: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != probes.EngineTriton {
		t.Fatalf("Fingerprint = %q, want triton", es.Table.Engine)
	}
}

// triton is an aisim Triton as Triton runs: inference on one port and
// its metrics on another (--metrics-port), with one slot and three
// requests of its own in flight, so two wait in Triton's queue.
func triton(t *testing.T) (api, metrics *httptest.Server) {
	t.Helper()
	sim, err := aisim.New(aisim.Config{Kind: probes.KindKServe, Knobs: aisim.Knobs{Slots: 1, Load: 3}})
	if err != nil {
		t.Fatal(err)
	}
	api, metrics = httptest.NewServer(sim), httptest.NewServer(sim.MetricsHandler())
	t.Cleanup(func() { sim.Close(); api.Close(); metrics.Close() })
	return api, metrics
}

// port is the port of srv's URL.
func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestSignalsOnTheMetricsPort reads Triton's signals where Triton serves
// them, not on its inference port: at the target's MetricsURL, and
// without one on the metrics port of the base URL's host.
func TestSignalsOnTheMetricsPort(t *testing.T) {
	api, metrics := triton(t)
	c := client(t)
	ctx := context.Background()
	want := probes.FieldRequestsWaiting | probes.FieldRequests
	waiting := func(read probes.SignalsFunc, tg probes.Target) bool {
		s, err := read(ctx, c, tg)
		if err != nil {
			t.Fatal(err)
		}
		if s.Engine != probes.EngineTriton || !s.Has(want) {
			t.Fatalf("got %+v, want Triton's %v", s, want)
		}
		return s.RequestsWaiting == 2
	}
	family := kserve.Family().Probes(probes.KindKServe).Signals
	t.Run("metrics_url", func(t *testing.T) {
		tg := probes.Target{ID: "t", Kind: probes.KindKServe, BaseURL: api.URL, MetricsURL: metrics.URL + "/metrics"}
		agenttest.Eventually(t, 10*time.Second, "two waiting", func() bool { return waiting(family, tg) })
	})
	t.Run("default port", func(t *testing.T) {
		tg := probes.Target{ID: "t", Kind: probes.KindKServe, BaseURL: api.URL}
		agenttest.Eventually(t, 10*time.Second, "two waiting", func() bool { return waiting(kserve.ReadSignals(port(t, metrics)), tg) })
	})
	t.Run("base URL has them", func(t *testing.T) {
		// A gateway that serves Triton's metrics beside its API.
		tg := probes.Target{ID: "t", Kind: probes.KindKServe, BaseURL: metrics.URL}
		agenttest.Eventually(t, 10*time.Second, "two waiting", func() bool { return waiting(kserve.ReadSignals("1"), tg) })
	})
	t.Run("nowhere", func(t *testing.T) {
		// The metrics port is the API's: no nv_inference_ series on either.
		tg := probes.Target{ID: "t", Kind: probes.KindKServe, BaseURL: api.URL}
		_, err := kserve.ReadSignals(port(t, api))(ctx, c, tg)
		var he *probes.HTTPError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), api.URL+"/metrics") || !strings.Contains(err.Error(), "metrics_url") {
			t.Fatalf("err = %v, want both reads' 404 and a hint at metrics_url", err)
		}
	})
	t.Run("server down", func(t *testing.T) {
		down := httptest.NewServer(http.NotFoundHandler())
		base := down.URL
		down.Close()
		var asked atomic.Int64
		other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked.Add(1) }))
		defer other.Close()
		_, err := kserve.ReadSignals(port(t, other))(ctx, c, probes.Target{ID: "t", Kind: probes.KindKServe, BaseURL: base})
		if err == nil || asked.Load() != 0 {
			t.Fatalf("err = %v after %d reads of the metrics port, want the base URL's error and none", err, asked.Load())
		}
	})
}
