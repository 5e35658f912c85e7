package kserve_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vitals-dev/vitals/probes"
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
	if e := probes.Fingerprint(b); e != probes.EngineTriton {
		t.Fatalf("Fingerprint = %q", e)
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
	if e := probes.Fingerprint(b); e != probes.EngineTriton {
		t.Fatalf("Fingerprint = %q, want triton", e)
	}
}
