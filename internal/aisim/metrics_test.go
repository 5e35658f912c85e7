package aisim_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// scrape parses the text exposition at url.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET %s: %d %q", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the text format: %v", url, err)
	}
	return fams
}

// series returns the value of the series of name whose labels include
// want, and the label names of that series; ok is false when there is
// none.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, labels []string, ok bool) {
	mf := fams[name]
	if mf == nil {
		return 0, nil, false
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		for k := range have {
			labels = append(labels, k)
		}
		sort.Strings(labels)
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), labels, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), labels, true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), labels, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), labels, true
		}
	}
	return 0, nil, false
}

// TestEngineMetrics checks each engine's series, types and label names,
// and that its counters count the work done: one request of 4 tokens.
func TestEngineMetrics(t *testing.T) {
	type want struct {
		name   string
		typ    dto.MetricType
		labels map[string]string // labels to match; nil: any
		names  string            // the series' label names, comma-joined
		value  float64           // after the request; -1: any
	}
	tests := []struct {
		kind    probes.Kind
		version string
		infer   string // POST path and body
		body    string
		metrics string // where the metrics are: "api" or "own"
		want    []want
		absent  []string
	}{
		{probes.KindVLLM, "0.11.0", "/v1/completions", `{"model":"sim-chat","prompt":"a b","max_tokens":4}`, "api", []want{
			{"vllm:num_requests_running", dto.MetricType_GAUGE, nil, "engine,model_name", 0},
			{"vllm:num_requests_waiting", dto.MetricType_GAUGE, nil, "engine,model_name", 0},
			{"vllm:kv_cache_usage_perc", dto.MetricType_GAUGE, nil, "engine,model_name", 0},
			{"vllm:generation_tokens_total", dto.MetricType_COUNTER, map[string]string{"model_name": "sim-chat", "engine": "0"}, "engine,model_name", 4},
			{"vllm:prompt_tokens_total", dto.MetricType_COUNTER, nil, "engine,model_name", 2},
			{"vllm:request_success_total", dto.MetricType_COUNTER, map[string]string{"finished_reason": "length"}, "engine,finished_reason,model_name", 1},
			{"vllm:request_success_total", dto.MetricType_COUNTER, map[string]string{"finished_reason": "stop"}, "engine,finished_reason,model_name", 0},
			{"vllm:engine_sleep_state", dto.MetricType_GAUGE, map[string]string{"sleep_state": "awake"}, "engine,model_name,sleep_state", 1},
		}, []string{"vllm:gpu_cache_usage_perc"}},
		{probes.KindVLLM, "0.6.3", "/v1/completions", `{"model":"sim-chat","prompt":"a b","max_tokens":4}`, "api", []want{
			{"vllm:gpu_cache_usage_perc", dto.MetricType_GAUGE, nil, "model_name", 0},
			{"vllm:generation_tokens_total", dto.MetricType_COUNTER, nil, "model_name", 4},
			{"vllm:request_success_total", dto.MetricType_COUNTER, map[string]string{"finished_reason": "length"}, "finished_reason,model_name", 1},
		}, []string{"vllm:kv_cache_usage_perc", "vllm:engine_sleep_state"}},
		{probes.KindLlamaCpp, "", "/v1/chat/completions", `{"max_tokens":4,"messages":[{"role":"user","content":"one two three"}]}`, "api", []want{
			{"llamacpp:requests_processing", dto.MetricType_GAUGE, nil, "", 0},
			{"llamacpp:requests_deferred", dto.MetricType_GAUGE, nil, "", 0},
			{"llamacpp:tokens_predicted_total", dto.MetricType_COUNTER, nil, "", 4},
			{"llamacpp:prompt_tokens_total", dto.MetricType_COUNTER, nil, "", 3},
			{"llamacpp:n_decode_total", dto.MetricType_COUNTER, nil, "", 5},
		}, nil},
		{probes.KindTGI, "", "/generate", `{"inputs":"a","parameters":{"max_new_tokens":4}}`, "api", []want{
			{"tgi_queue_size", dto.MetricType_GAUGE, nil, "", 0},
			{"tgi_batch_current_size", dto.MetricType_GAUGE, nil, "", 0},
			{"tgi_request_success", dto.MetricType_COUNTER, nil, "", 1},
			{"tgi_request_count", dto.MetricType_COUNTER, nil, "", 1},
			{"tgi_request_generated_tokens", dto.MetricType_HISTOGRAM, nil, "", 1},
		}, []string{"tgi_request_failure"}},
		{probes.KindTEI, "", "/embed", `{"inputs":"a"}`, "api", []want{
			{"te_queue_size", dto.MetricType_GAUGE, nil, "", 0},
			{"te_request_success", dto.MetricType_COUNTER, map[string]string{"method": "single"}, "method", 1},
			{"te_request_count", dto.MetricType_COUNTER, nil, "method", 1},
		}, []string{"te_request_failure"}},
		{probes.KindKServe, "", "/v2/models/sim-llm/infer", `{"inputs":[{"name":"text_input","data":["hi"]}]}`, "own", []want{
			{"nv_inference_request_success", dto.MetricType_COUNTER, map[string]string{"model": "sim-llm"}, "model,version", 1},
			{"nv_inference_request_success", dto.MetricType_COUNTER, map[string]string{"model": "sim-embed"}, "model,version", 0},
			{"nv_inference_request_failure", dto.MetricType_COUNTER, map[string]string{"model": "sim-llm", "reason": "BACKEND"}, "model,reason,version", 0},
			{"nv_inference_pending_request_count", dto.MetricType_GAUGE, map[string]string{"model": "sim-llm"}, "model,version", 0},
			{"nv_inference_count", dto.MetricType_COUNTER, map[string]string{"model": "sim-llm"}, "model,version", 1},
		}, nil},
		{aisim.KindSGLang, "", "/v1/completions", `{"model":"aisim/tiny-sglang","prompt":"a","max_tokens":4}`, "api", []want{
			{"sglang:num_running_reqs", dto.MetricType_GAUGE, nil, "model_name", 0},
			{"sglang:num_queue_reqs", dto.MetricType_GAUGE, nil, "model_name", 0},
			{"sglang:token_usage", dto.MetricType_GAUGE, nil, "model_name", 0},
			{"sglang:generation_tokens_total", dto.MetricType_COUNTER, map[string]string{"model_name": "aisim/tiny-sglang"}, "model_name", 4},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+" "+tt.version, func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tt.kind, Version: tt.version})
			url := e.url + "/metrics"
			if tt.metrics == "own" {
				own := httptest.NewServer(e.sim.MetricsHandler())
				t.Cleanup(own.Close)
				url = own.URL + "/metrics"
				e.must(t, "GET", "/metrics", "", 404) // not on Triton's HTTP port
			}
			e.must(t, "POST", tt.infer, tt.body, 200)
			fams := scrape(t, e.c, url)
			for _, w := range tt.want {
				mf := fams[w.name]
				if mf == nil {
					t.Errorf("no %s", w.name)
					continue
				}
				if mf.GetType() != w.typ {
					t.Errorf("%s is a %v, want a %v", w.name, mf.GetType(), w.typ)
				}
				v, labels, ok := series(fams, w.name, w.labels)
				if !ok {
					t.Errorf("no %s%v", w.name, w.labels)
					continue
				}
				if got := strings.Join(labels, ","); got != w.names {
					t.Errorf("%s labels %q, want %q", w.name, got, w.names)
				}
				if w.value >= 0 && v != w.value {
					t.Errorf("%s%v = %v, want %v", w.name, w.labels, v, w.value)
				}
			}
			for _, name := range tt.absent {
				if fams[name] != nil {
					t.Errorf("%s is there, want it absent", name)
				}
			}
		})
	}
}

func TestMetricsOff(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{MetricsOff: true, SlotsOff: true}})
	b := e.must(t, "GET", "/metrics", "", 501)
	if !bytes.Contains(b, []byte("Start it with `--metrics`")) {
		t.Fatalf("body %s", b)
	}
	e.must(t, "GET", "/slots", "", 501)
	e.sim.SetMetricsOff(false)
	e.sim.SetSlotsOff(false)
	e.must(t, "GET", "/metrics", "", 200)
	e.must(t, "GET", "/slots", "", 200)

	sg := start(t, aisim.Config{Kind: aisim.KindSGLang, Knobs: aisim.Knobs{MetricsOff: true}})
	sg.must(t, "GET", "/metrics", "", 404)
}

// TestBusyQueue is a server with more work than slots that keeps
// completing it: waiting > 0, running at the slot count, tokens moving.
func TestBusyQueue(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindVLLM, Version: "0.11.0",
		Knobs: aisim.Knobs{Slots: 2, Load: 5, TokenInterval: aisim.Duration(time.Millisecond)}})
	gauges := func() (running, waiting, tokens float64) {
		fams := scrape(t, e.c, e.url+"/metrics")
		running, _, _ = series(fams, "vllm:num_requests_running", nil)
		waiting, _, _ = series(fams, "vllm:num_requests_waiting", nil)
		tokens, _, _ = series(fams, "vllm:generation_tokens_total", nil)
		return
	}
	var first float64
	waitFor(t, "2 running and 3 waiting", func() bool {
		r, w, tok := gauges()
		first = tok
		return r == 2 && w == 3
	})
	waitFor(t, "the tokens counter to move while the queue stays", func() bool {
		r, w, tok := gauges()
		return tok > first && r == 2 && w == 3
	})
	waitFor(t, "requests to complete", func() bool {
		v, _, _ := series(scrape(t, e.c, e.url+"/metrics"), "vllm:request_success_total", map[string]string{"finished_reason": "stop"})
		return v > 0
	})
	e.sim.SetLoad(0)
	waitFor(t, "the queue to drain", func() bool { r, w, _ := gauges(); return r == 0 && w == 0 })
}

// TestHungQueue is a server whose work does not move: running and
// waiting requests, the tokens counter frozen, health 200.
func TestHungQueue(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{Slots: 2, Stuck: true}})
	e.sim.SetLoad(3)
	state := func() (processing, deferred, tokens float64) {
		fams := scrape(t, e.c, e.url+"/metrics")
		processing, _, _ = series(fams, "llamacpp:requests_processing", nil)
		deferred, _, _ = series(fams, "llamacpp:requests_deferred", nil)
		tokens, _, _ = series(fams, "llamacpp:tokens_predicted_total", nil)
		return
	}
	waitFor(t, "2 processing and 1 deferred", func() bool { p, d, _ := state(); return p == 2 && d == 1 })
	e.must(t, "GET", "/health", "", 200)
	for range 3 {
		if p, d, tok := state(); p != 2 || d != 1 || tok != 0 {
			t.Fatalf("stuck: processing %v, deferred %v, tokens %v; want 2, 1, 0", p, d, tok)
		}
	}
	b := e.must(t, "GET", "/slots", "", 200)
	if bytes.Count(b, []byte(`"is_processing":true`)) != 2 || !bytes.Contains(b, []byte(`"n_decoded":0`)) {
		t.Fatalf("slots %s", b)
	}
	// Unstuck, the same requests go on.
	e.sim.SetStuck(false)
	waitFor(t, "tokens to come", func() bool { _, _, tok := state(); return tok > 0 })
}

// TestTokensAreWork: the counter moves as tokens are generated, not when
// the answer is written.
func TestTokensAreWork(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{TokenInterval: aisim.Duration(40 * time.Millisecond)}})
	done := make(chan error, 1)
	go func() {
		_, _, err := e.do(context.Background(), "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
		done <- err
	}()
	waitFor(t, "tokens to be counted while the request runs", func() bool {
		fams := scrape(t, e.c, e.url+"/metrics")
		tok, _, _ := series(fams, "llamacpp:tokens_predicted_total", nil)
		p, _, _ := series(fams, "llamacpp:requests_processing", nil)
		return tok > 0 && tok < 9 && p == 1
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, e.c, e.url+"/metrics")
	if tok, _, _ := series(fams, "llamacpp:tokens_predicted_total", nil); tok != 9 {
		t.Fatalf("tokens %v after the answer, want 9", tok)
	}
}

// TestFailuresCounted: injected server errors, refused requests and
// clients that give up show in each engine's failure series.
func TestFailuresCounted(t *testing.T) {
	t.Run("tgi", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindTGI})
		e.must(t, "POST", "/generate", `{not json`, 400)
		e.sim.SetErrorRate(1)
		e.must(t, "POST", "/generate", `{"inputs":"x"}`, 500)
		e.must(t, "GET", "/aisim/stats", "", 200)
		e.sim.SetErrorRate(0)
		fams := scrape(t, e.c, e.url+"/metrics")
		for err, want := range map[string]float64{"validation": 1, "generation": 1} {
			if v, _, _ := series(fams, "tgi_request_failure", map[string]string{"err": err}); v != want {
				t.Errorf("tgi_request_failure{err=%q} = %v, want %v", err, v, want)
			}
		}
		if v, _, _ := series(fams, "tgi_request_success", nil); v != 0 {
			t.Errorf("tgi_request_success = %v", v)
		}
	})
	t.Run("triton", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindKServe})
		own := httptest.NewServer(e.sim.MetricsHandler())
		t.Cleanup(own.Close)
		e.sim.SetErrorRate(1)
		e.must(t, "POST", "/v2/models/sim-llm/infer", `{"inputs":[{"name":"text_input","data":["hi"]}]}`, 500)
		e.sim.SetErrorRate(0)
		e.must(t, "POST", "/v2/models/sim-embed/infer", `{"inputs":[]}`, 400)
		fams := scrape(t, e.c, own.URL)
		if v, _, _ := series(fams, "nv_inference_request_failure", map[string]string{"model": "sim-llm", "reason": "BACKEND"}); v != 1 {
			t.Errorf("BACKEND failures of sim-llm = %v, want 1", v)
		}
		if v, _, _ := series(fams, "nv_inference_request_failure", map[string]string{"model": "sim-embed", "reason": "OTHER"}); v != 1 {
			t.Errorf("OTHER failures of sim-embed = %v, want 1", v)
		}
	})
	t.Run("vllm abort", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindVLLM, Version: "0.11.0", Knobs: aisim.Knobs{Stuck: true}})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, _, err := e.do(ctx, "POST", "/v1/completions", `{"model":"sim-chat","prompt":"x"}`); err == nil {
			t.Fatal("a stuck request was answered")
		}
		waitFor(t, "the abort to be counted", func() bool {
			v, _, _ := series(scrape(t, e.c, e.url+"/metrics"), "vllm:request_success_total", map[string]string{"finished_reason": "abort"})
			return v == 1
		})
	})
}
