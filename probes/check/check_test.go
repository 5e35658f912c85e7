package check_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/check"
	"github.com/vitals-dev/vitals/probes/detect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, cfg aisim.Config) (*aisim.Server, string) {
	t.Helper()
	s, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); srv.Close() })
	return s, srv.URL
}

// detected returns the target as the catalog has it after detection.
func detected(t *testing.T, c *http.Client, kind probes.Kind, base string) probes.Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := detect.Detect(ctx, c, base, detect.Options{Kind: kind, Models: []string{"sim-llm"}})
	if err != nil {
		t.Fatal(err)
	}
	return probes.Target{ID: "t", BaseURL: base, Kind: d.Kind, Models: d.Models, Capabilities: d.Capabilities}
}

func TestProbesPerKind(t *testing.T) {
	cases := []struct {
		kind      probes.Kind
		modelType string
		op        string
		tokens    bool
	}{
		{probes.KindOpenAI, "", check.OpChat, true},
		{probes.KindLlamaCpp, "", check.OpChat, true},
		{probes.KindLlamaCpp, "embedding", check.OpEmbeddings, false},
		{probes.KindVLLM, "", check.OpChat, true},
		{probes.KindOllama, "", check.OpChat, true},
		{probes.KindTGI, "", check.OpCompletion, true},
		{probes.KindTEI, "", check.OpEmbeddings, false},
		{probes.KindTEI, "reranker", check.OpRerank, false},
		{probes.KindKServe, "", check.OpInfer, false},
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, tc := range cases {
		t.Run(string(tc.kind)+"-"+tc.modelType, func(t *testing.T) {
			_, base := serve(t, aisim.Config{Kind: tc.kind, ModelType: tc.modelType})
			tg := detected(t, c, tc.kind, base)
			ctx := context.Background()
			cfg := probes.Config{Timeout: 5 * time.Second, MaxTokens: 2}
			if _, err := probes.Run(ctx, check.LivenessProbe(tg.Kind), c, tg, cfg, nil); err != nil {
				t.Errorf("liveness: %v", err)
			}
			if _, err := probes.Run(ctx, check.ReadinessProbe(tg.Kind), c, tg, cfg, nil); err != nil {
				t.Errorf("readiness: %v", err)
			}
			if op := check.Operation(tg.Kind, tg); op != tc.op {
				t.Fatalf("operation = %q, want %q (%+v)", op, tc.op, tg)
			}
			res, err := probes.Run(ctx, check.SyntheticProbe(tg.Kind), c, tg, cfg, nil)
			if err != nil {
				t.Fatalf("synthetic: %v", err)
			}
			if res.Operation != tc.op || (tc.tokens && (res.CompletionTokens < 1 || res.CompletionTokens > 4)) {
				t.Errorf("synthetic = %+v", res)
			}
			if tc.tokens && tc.op == check.OpChat && res.TimeToFirstToken <= 0 {
				t.Errorf("no time to first token: %+v", res)
			}
		})
	}
}

func TestReadinessNotReady(t *testing.T) {
	_, base := serve(t, aisim.Config{Kind: probes.KindOllama})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	tg := probes.Target{ID: "o", BaseURL: base, Kind: probes.KindOllama, Model: "llama3:70b"}
	_, err := probes.Run(context.Background(), check.ReadinessProbe(probes.KindOllama), c, tg, probes.Config{}, nil)
	if !errors.Is(err, probes.ErrNotReady) || probes.Classify(err) != probes.ClassNotReady {
		t.Errorf("missing model: %v (%s)", err, probes.Classify(err))
	}
	if check.ReadinessProbe(probes.KindAuto) != nil {
		t.Error("readiness for an unknown kind")
	}
}

func TestResources(t *testing.T) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, kind := range []probes.Kind{probes.KindLlamaCpp, probes.KindOllama} {
		_, base := serve(t, aisim.Config{Kind: kind})
		u, _ := url.Parse(base)
		port, _ := strconv.Atoi(u.Port())
		pid, err := check.FindListener(nil, port)
		if err != nil || pid != os.Getpid() {
			t.Fatalf("FindListener(%d) = %d, %v; want %d", port, pid, err, os.Getpid())
		}
		tg := probes.Target{ID: "r", BaseURL: base, Kind: kind, PID: pid}
		if kind == probes.KindOllama {
			// Load a model, as a generate does.
			_, _ = probes.Run(context.Background(), check.SyntheticProbe(kind), c,
				probes.Target{BaseURL: base, Kind: kind, Model: "tiny:latest"}, probes.Config{MaxTokens: 1}, nil)
		}
		res, err := probes.Run(context.Background(), check.ResourcesProbe(kind, nil), c, tg, probes.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Process == nil || res.Process.ResidentBytes <= 0 || res.Process.CPUSeconds <= 0 {
			t.Errorf("%s process = %+v", kind, res.Process)
		}
		if kind == probes.KindLlamaCpp && len(res.ServerMetrics) == 0 {
			t.Errorf("no server series: %+v", res)
		}
		if kind == probes.KindOllama && len(res.ModelMemory) == 0 {
			t.Errorf("no model memory: %+v", res)
		}
	}
	if _, err := check.FindListener(nil, 1); !errors.Is(err, check.ErrNoListener) {
		t.Errorf("port 1: %v", err)
	}
}

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
			names: check.ServerSeries[probes.KindVLLM],
			want:  map[string]float64{"vllm:num_requests_running": 5, "vllm:gpu_cache_usage_perc": 0.5},
		},
		{
			name:  "typed families with colons, as llama.cpp writes them",
			text:  "# HELP llamacpp:requests_processing Number of requests processing.\n# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 1\n# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.25\n",
			names: check.ServerSeries[probes.KindLlamaCpp],
			want:  map[string]float64{"llamacpp:requests_processing": 2, "llamacpp:requests_deferred": 1, "llamacpp:kv_cache_usage_ratio": 0.25},
		},
		{
			name:  "reads on past a bad line",
			text:  "tgi_queue_size 4\ntgi_queue_size{a=} x\ntgi_batch_current_size 7\n",
			names: check.ServerSeries[probes.KindTGI],
			want:  map[string]float64{"tgi_queue_size": 4, "tgi_batch_current_size": 7},
		},
		{
			name:  "a sample whose value does not parse is not a zero",
			text:  "te_queue_size nan-ish\n",
			names: check.ServerSeries[probes.KindTEI],
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
			got := check.PickSeries([]byte(tc.text), tc.names)
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOutputTokensPerSecond(t *testing.T) {
	for _, tc := range []struct {
		r    probes.Result
		want float64
	}{
		{probes.Result{}, 0},
		{probes.Result{CompletionTokens: 4, Duration: time.Second}, 4},
		{probes.Result{CompletionTokens: 5, Duration: 3 * time.Second, TimeToFirstToken: time.Second}, 2},
	} {
		if got := tc.r.OutputTokensPerSecond(); got != tc.want {
			t.Errorf("%+v: %g, want %g", tc.r, got, tc.want)
		}
	}
}
