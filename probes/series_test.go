package probes_test

import (
	"maps"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

func TestPickSeries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		text  string
		names []string
		want  map[string]float64
	}{
		{
			name:  "sums over labels, keeps only the names asked",
			text:  "# HELP x y\nvllm:num_requests_running{model=\"a\"} 2\nvllm:num_requests_running{model=\"b\"} 3\nother 1\nvllm:gpu_cache_usage_perc 0.5 1700000000\nbroken{ 1\n",
			names: []string{"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"},
			want:  map[string]float64{"vllm:num_requests_running": 5, "vllm:gpu_cache_usage_perc": 0.5},
		},
		{
			name:  "typed families with colons, as llama.cpp writes them",
			text:  "# HELP llamacpp:requests_processing Number of requests processing.\n# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 1\n# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.25\n",
			names: []string{"llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:kv_cache_usage_ratio"},
			want:  map[string]float64{"llamacpp:requests_processing": 2, "llamacpp:requests_deferred": 1, "llamacpp:kv_cache_usage_ratio": 0.25},
		},
		{
			name:  "reads on past a bad line",
			text:  "tgi_queue_size 4\ntgi_queue_size{a=} x\ntgi_batch_current_size 7\n",
			names: []string{"tgi_queue_size", "tgi_batch_current_size"},
			want:  map[string]float64{"tgi_queue_size": 4, "tgi_batch_current_size": 7},
		},
		{
			name:  "a sample whose value does not parse is not a zero",
			text:  "te_queue_size nan-ish\n",
			names: []string{"te_queue_size", "te_batch_next_size"},
			want:  map[string]float64{},
		},
		{
			name:  "a counter counts, a histogram of the name is no sample",
			text:  "# TYPE a counter\na 3\n# TYPE b histogram\nb_bucket{le=\"+Inf\"} 1\nb_sum 2\nb_count 1\n",
			names: []string{"a", "b"},
			want:  map[string]float64{"a": 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := probes.PickSeries([]byte(tc.text), tc.names)
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
