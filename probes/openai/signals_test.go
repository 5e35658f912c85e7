package openai_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/openai"
)

func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		file  string
		table probes.SignalTable
		want  probes.Signals
	}{{
		// V1 engine, two data-parallel engines: the label sets add up, the
		// KV cache is the fuller engine's.
		file:  "signals-vllm.txt",
		table: openai.VLLMSignals,
		want: probes.Signals{
			Engine: probes.EngineVLLM,
			Reported: probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage |
				probes.FieldGeneratedTokens | probes.FieldRequests | probes.FieldAsleep,
			RequestsRunning: 5, RequestsWaiting: 1, KVCacheUsage: 0.5703, GeneratedTokens: 812345 + 655402,
			Requests: map[probes.RequestResult]float64{
				probes.RequestSuccess:  1520 + 36 + 1411 + 40,
				probes.RequestCanceled: 4 + 2,
				probes.RequestFailure:  0,
			},
		},
	}, {
		// V0 engine: only the old KV-cache name.
		file:  "signals-vllm-0.8.txt",
		table: openai.VLLMSignals,
		want: probes.Signals{
			Engine: probes.EngineVLLM,
			Reported: probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage |
				probes.FieldGeneratedTokens | probes.FieldRequests,
			RequestsRunning: 7, RequestsWaiting: 12, KVCacheUsage: 0.9921, GeneratedTokens: 1998431,
			Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 3810 + 108},
		},
	}, {
		// Two data-parallel ranks.
		file:  "signals-sglang.txt",
		table: openai.SGLangSignals,
		want: probes.Signals{
			Engine: probes.EngineSGLang,
			Reported: probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage |
				probes.FieldGeneratedTokens | probes.FieldRequests,
			RequestsRunning: 24 + 19, RequestsWaiting: 6, KVCacheUsage: 0.71, GeneratedTokens: 7557572,
			Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 11228, probes.RequestCanceled: 17},
		},
	}} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.table.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != tc.want.Engine {
				t.Fatalf("Fingerprint = %q, want %q", es.Table.Engine, tc.want.Engine)
			}
		})
	}
}

// TestVLLMRenamedKVCache is vLLM 0.9 and 0.10, which serve the KV-cache
// usage under both names: it counts once, from the new name.
func TestVLLMRenamedKVCache(t *testing.T) {
	body := `# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
`
	s, err := openai.VLLMSignals.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(probes.FieldKVCacheUsage) || s.KVCacheUsage != 0.25 {
		t.Fatalf("KV cache usage %v (reported %v), want 0.25", s.KVCacheUsage, s.Reported)
	}
	if s.Has(probes.FieldRequestsRunning) {
		t.Fatalf("running reported from a body without it: %v", s.Reported)
	}
}

// TestVLLMAsleep is a vLLM with two engines, one asleep at level 1: the
// sleep state counts it, and an awake server reports zero engines asleep.
func TestVLLMAsleep(t *testing.T) {
	body := `# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.
# TYPE vllm:engine_sleep_state gauge
vllm:engine_sleep_state{engine="0",model_name="m",sleep_state="awake"} 0.0
vllm:engine_sleep_state{engine="0",model_name="m",sleep_state="weights_offloaded"} 1.0
vllm:engine_sleep_state{engine="0",model_name="m",sleep_state="discard_all"} 0.0
vllm:engine_sleep_state{engine="1",model_name="m",sleep_state="awake"} 1.0
vllm:engine_sleep_state{engine="1",model_name="m",sleep_state="weights_offloaded"} 0.0
vllm:engine_sleep_state{engine="1",model_name="m",sleep_state="discard_all"} 0.0
`
	s, err := openai.VLLMSignals.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if s.Reported != probes.FieldAsleep || s.Asleep != 1 {
		t.Fatalf("asleep %v (reported %v), want 1", s.Asleep, s.Reported)
	}
}
