package probes_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// bigVLLMBody is the /metrics of a vLLM with eight data-parallel engines
// and its dozen histograms of 40 buckets each, about what a large
// deployment serves, followed by the series the table reads.
func bigVLLMBody() []byte {
	var b strings.Builder
	for h := range 12 {
		name := fmt.Sprintf("vllm:histogram_%d_seconds", h)
		fmt.Fprintf(&b, "# HELP %s A histogram.\n# TYPE %s histogram\n", name, name)
		for e := range 8 {
			l := fmt.Sprintf(`engine="%d",model_name="meta-llama/Llama-3.1-70B-Instruct"`, e)
			fmt.Fprintf(&b, "%s_sum{%s} 1234.5\n", name, l)
			for i := range 40 {
				fmt.Fprintf(&b, "%s_bucket{%s,le=\"%d.0\"} %d.0\n", name, l, i, i*3)
			}
			fmt.Fprintf(&b, "%s_bucket{%s,le=\"+Inf\"} 120.0\n%s_count{%s} 120.0\n", name, l, name, l)
		}
	}
	for _, g := range []string{"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} {
		fmt.Fprintf(&b, "# HELP %s A gauge.\n# TYPE %s gauge\n", g, g)
		for e := range 8 {
			fmt.Fprintf(&b, "%s{engine=\"%d\",model_name=\"m\"} 3.0\n", g, e)
		}
	}
	return []byte(b.String())
}

func BenchmarkDecodeVLLM(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"testdata", readBody(b, "openai/testdata/signals-vllm.txt")},
		{"8-engines", bigVLLMBody()},
	} {
		b.Run(tc.name+"/kept", func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := openai.VLLMSignals.Decode(tc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The baseline: the whole body parsed, as the decoder did first.
		b.Run(tc.name+"/whole", func(b *testing.B) {
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := probes.DecodeWhole(openai.VLLMSignals, tc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
