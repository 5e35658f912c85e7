package probes_test

import (
	"fmt"

	"github.com/vitals-dev/vitals/probes"
)

// A table names, per signal, the series an engine writes it under: every
// name it has had, newest first. Decode reads a /metrics body with it, and
// Reported tells a zero from a signal the engine did not give.
func ExampleSignalTable_Decode() {
	table := probes.SignalTable{
		Engine:       probes.EngineVLLM,
		Running:      []probes.Source{{Names: []string{"vllm:num_requests_running"}}},
		Waiting:      []probes.Source{{Names: []string{"vllm:num_requests_waiting"}}},
		KVCacheUsage: []probes.Source{{Names: []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}}},
	}
	body := `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5
`
	s, err := table.Decode([]byte(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.RequestsRunning, s.KVCacheUsage, s.Has(probes.FieldRequestsWaiting), s.Reported)
	// Output: 5 0.5 false requests_running|kv_cache_usage
}

// Fingerprint names which of the tables' engines wrote a /metrics body,
// by the prefixes of its metric names.
func ExampleFingerprint() {
	body := "# TYPE tgi_queue_size gauge\ntgi_queue_size 0\n# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 2\n"
	tgi := probes.SignalTable{Engine: probes.EngineTGI, Prefixes: []string{"tgi_"}}
	tei := probes.SignalTable{Engine: probes.EngineTEI, Prefixes: []string{"te_"}}
	fmt.Println(probes.Fingerprint([]byte(body), tei, tgi))
	// Output: tgi
}
