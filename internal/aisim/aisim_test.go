package aisim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	sim *aisim.Server
	url string
	c   *http.Client
}

func start(t *testing.T, cfg aisim.Config) env {
	t.Helper()
	s, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close) // runs before srv.Close: ends any hang
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return env{sim: s, url: srv.URL, c: &http.Client{Transport: tr}}
}

// do sends a request and returns the status and body.
func (e env) do(ctx context.Context, method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (e env) must(t *testing.T, method, path, body string, want int) []byte {
	t.Helper()
	st, b, err := e.do(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if st != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	return b
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		cfg  aisim.Config
		ok   bool
	}{
		{"ollama", aisim.Config{Kind: probes.KindOllama}, true},
		{"auto", aisim.Config{Kind: probes.KindAuto}, false},
		{"empty", aisim.Config{}, false},
		{"tei reranker", aisim.Config{Kind: probes.KindTEI, ModelType: "reranker"}, true},
		{"tei bad type", aisim.Config{Kind: probes.KindTEI, ModelType: "chat"}, false},
		{"llamacpp reranker", aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "reranker"}, true},
		{"llamacpp bad type", aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "classifier"}, false},
		{"sglang", aisim.Config{Kind: aisim.KindSGLang}, true},
		{"bad sleep level", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{SleepLevel: 3}}, false},
		{"too much load", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Load: 5000}}, false},
		{"too many slots", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Slots: 5000}}, false},
		{"negative slots", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Slots: -1}}, false},
		{"bad kv usage", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{KVCacheUsage: 2}}, false},
		{"bad error rate", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{ErrorRate: 1.5}}, false},
		{"negative latency", aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Latency: -1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := aisim.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, %v", s, err)
			}
		})
	}
}

// endpoints lists, per kind, a health or list endpoint and an inference
// request.
var endpoints = map[probes.Kind]struct {
	health, healthMethod string
	infer, body          string
	stream               string
}{
	probes.KindOpenAI:   {"/v1/models", "GET", "/v1/chat/completions", `{"model":"sim-chat","messages":[{"role":"user","content":"hi"}]}`, `{"model":"sim-chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	probes.KindLlamaCpp: {"/health", "GET", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, `{"stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	probes.KindVLLM:     {"/health", "GET", "/v1/completions", `{"model":"sim-chat","prompt":"hi"}`, `{"model":"sim-chat","prompt":"hi","stream":true}`},
	probes.KindOllama:   {"/api/version", "GET", "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`, `{"model":"tiny","prompt":"hi"}`},
	probes.KindTGI:      {"/info", "GET", "/generate", `{"inputs":"hi"}`, `{"inputs":"hi"}`},
	probes.KindTEI:      {"/health", "GET", "/embed", `{"inputs":"hi"}`, ""},
	probes.KindKServe:   {"/v2/health/ready", "GET", "/v2/models/sim-embed/infer", `{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["hi"]}]}`, ""},
}

func streamPath(k probes.Kind) string {
	if k == probes.KindTGI {
		return "/generate_stream"
	}
	return endpoints[k].infer
}

func TestErrorRate(t *testing.T) {
	for _, k := range probes.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Seed: 7})
			ep := endpoints[k]
			e.must(t, "POST", ep.infer, ep.body, 200)

			e.sim.SetErrorRate(1)
			b := e.must(t, ep.healthMethod, ep.health, "", 500)
			if !json.Valid(b) || !bytes.Contains(b, []byte("injected error")) {
				t.Fatalf("error body %s", b)
			}
			e.must(t, "POST", ep.infer, ep.body, 500)

			e.sim.SetErrorRate(0.5)
			fails := 0
			for range 200 {
				st, _, err := e.do(context.Background(), ep.healthMethod, ep.health, "")
				if err != nil {
					t.Fatal(err)
				}
				if st == 500 {
					fails++
				}
			}
			if fails < 60 || fails > 140 {
				t.Fatalf("%d of 200 failed at rate 0.5", fails)
			}
		})
	}
}

func TestHangEndsWithContext(t *testing.T) {
	for _, k := range probes.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Knobs: aisim.Knobs{Hang: true}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			_, _, err := e.do(ctx, endpoints[k].healthMethod, endpoints[k].health, "")
			if probes.Classify(err) != probes.ClassTimeout {
				t.Fatalf("err = %v, want a timeout", err)
			}
			// The control endpoint still answers, and undoes the hang.
			e.must(t, "POST", "/aisim/knobs", `{"hang":false}`, 200)
			e.must(t, endpoints[k].healthMethod, endpoints[k].health, "", 200)
		})
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if !agenttest.Within(time.Until(deadline), cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestHangEndsWithClose(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Hang: true}})
	errc := make(chan error, 1)
	go func() {
		_, _, err := e.do(context.Background(), "GET", "/api/tags", "")
		errc <- err
	}()
	waitFor(t, "the request to arrive", func() bool { return e.sim.Requests() == 1 })
	e.sim.Close()
	e.sim.Close() // twice is fine
	err := <-errc
	if c := probes.Classify(err); c != probes.ClassReset {
		t.Fatalf("err = %v (%s), want the connection dropped", err, c)
	}
}

func TestStuck(t *testing.T) {
	for _, k := range probes.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Knobs: aisim.Knobs{Stuck: true}})
			ep := endpoints[k]
			e.must(t, ep.healthMethod, ep.health, "", 200)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			_, _, err := e.do(ctx, "POST", ep.infer, ep.body)
			if probes.Classify(err) != probes.ClassTimeout {
				t.Fatalf("inference err = %v, want a timeout", err)
			}
			e.sim.SetStuck(false)
			e.must(t, "POST", ep.infer, ep.body, 200)
		})
	}
}

// firstChunk sends a streaming request and returns the time to the
// response headers and to the first body line that is not blank.
func firstChunk(t *testing.T, e env, path, body string) (headers, first time.Duration) {
	t.Helper()
	t0 := time.Now()
	resp, err := e.c.Post(e.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	headers = time.Since(t0)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			first = time.Since(t0)
			break
		}
	}
	io.Copy(io.Discard, resp.Body)
	return headers, first
}

func TestSlowFirstToken(t *testing.T) {
	const delay = 60 * time.Millisecond
	for _, k := range []probes.Kind{probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama, probes.KindTGI} {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Knobs: aisim.Knobs{SlowFirstToken: aisim.Duration(delay)}})
			_, first := firstChunk(t, e, streamPath(k), endpoints[k].stream)
			if first < delay {
				t.Fatalf("first chunk after %v, want >= %v", first, delay)
			}
			t0 := time.Now()
			e.must(t, "POST", endpoints[k].infer, endpoints[k].body, 200)
			if d := time.Since(t0); d < delay {
				t.Fatalf("non-streamed answer after %v, want >= %v", d, delay)
			}
			// Health endpoints are not delayed by it.
			e.must(t, endpoints[k].healthMethod, endpoints[k].health, "", 200)
		})
	}
}

func TestLatency(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindVLLM})
	e.sim.SetLatency(40*time.Millisecond, 10*time.Millisecond)
	t0 := time.Now()
	e.must(t, "GET", "/version", "", 200)
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Fatalf("answered after %v, want >= 40ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := e.do(ctx, "GET", "/version", ""); probes.Classify(err) != probes.ClassTimeout {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestGarbage(t *testing.T) {
	for _, k := range probes.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Knobs: aisim.Knobs{Garbage: true}})
			b := e.must(t, endpoints[k].healthMethod, endpoints[k].health, "", 200)
			if json.Valid(b) || len(b) == 0 {
				t.Fatalf("garbage body is valid JSON: %q", b)
			}
		})
	}
}

func TestDown(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp})
	e.sim.SetDown(true)
	_, _, err := e.do(context.Background(), "GET", "/health", "")
	if probes.Classify(err) != probes.ClassReset {
		t.Fatalf("err = %v, want reset", err)
	}
	e.must(t, "GET", "/aisim/knobs", "", 200)
	e.sim.SetDown(false)
	e.must(t, "GET", "/health", "", 200)
}

func TestVersionChange(t *testing.T) {
	tests := []struct {
		kind probes.Kind
		path string
		key  string
	}{
		{probes.KindLlamaCpp, "/props", "build_info"},
		{probes.KindVLLM, "/version", "version"},
		{probes.KindOllama, "/api/version", "version"},
		{probes.KindTGI, "/info", "version"},
		{probes.KindTEI, "/info", "version"},
		{probes.KindKServe, "/v2", "version"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tt.kind})
			version := func() string {
				var m map[string]any
				if err := json.Unmarshal(e.must(t, "GET", tt.path, "", 200), &m); err != nil {
					t.Fatal(err)
				}
				s, _ := m[tt.key].(string)
				return s
			}
			if got := version(); got != aisim.DefaultVersion(tt.kind) {
				t.Fatalf("version %q, want %q", got, aisim.DefaultVersion(tt.kind))
			}
			e.must(t, "POST", "/aisim/knobs", `{"version":"2.0.0-sim"}`, 200)
			if got := version(); got != "2.0.0-sim" {
				t.Fatalf("version after change %q", got)
			}
			e.sim.SetVersion("")
			if got := version(); got != aisim.DefaultVersion(tt.kind) {
				t.Fatalf("version after reset %q", got)
			}
		})
	}
}

func TestKnobsOverHTTP(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Latency: aisim.Duration(time.Millisecond)}})
	var k aisim.Knobs
	if err := json.Unmarshal(e.must(t, "GET", "/aisim/knobs", "", 200), &k); err != nil {
		t.Fatal(err)
	}
	if k.Latency != aisim.Duration(time.Millisecond) || k.Hang {
		t.Fatalf("initial knobs %+v", k)
	}
	// A partial update keeps the other fields; numbers are seconds.
	e.must(t, "POST", "/aisim/knobs", `{"error_rate":0.25,"slow_first_token":0.5,"jitter":"20ms"}`, 200)
	k = e.sim.Knobs()
	want := aisim.Knobs{Latency: aisim.Duration(time.Millisecond), Jitter: aisim.Duration(20 * time.Millisecond), ErrorRate: 0.25,
		SlowFirstToken: aisim.Duration(500 * time.Millisecond)}
	if k != want {
		t.Fatalf("knobs %+v, want %+v", k, want)
	}
	for _, bad := range []string{`{"nope":1}`, `{"error_rate":2}`, `{"latency":"soon"}`, `{"latency":"-1s"}`, `not json`} {
		b := e.must(t, "POST", "/aisim/knobs", bad, 400)
		if !bytes.Contains(b, []byte("error")) {
			t.Errorf("POST %s: body %s", bad, b)
		}
	}
	if e.sim.Knobs() != want {
		t.Fatalf("a bad update changed the knobs: %+v", e.sim.Knobs())
	}
	e.must(t, "DELETE", "/aisim/knobs", "", 200)
	if k := e.sim.Knobs(); k != (aisim.Knobs{Latency: aisim.Duration(time.Millisecond)}) {
		t.Fatalf("after DELETE %+v", k)
	}
	var st aisim.Stats
	if err := json.Unmarshal(e.must(t, "GET", "/aisim/stats", "", 200), &st); err != nil || st.Kind != probes.KindOllama {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestKnobSetters(t *testing.T) {
	s, err := aisim.New(aisim.Config{Kind: probes.KindTGI})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetErrorRate(7)
	s.SetLatency(-time.Second, time.Second)
	s.SetSlowFirstToken(time.Second)
	s.SetTokenInterval(time.Millisecond)
	s.SetGarbage(true)
	s.SetHang(true)
	s.SetStuck(true)
	s.SetDown(true)
	want := aisim.Knobs{ErrorRate: 1, Jitter: aisim.Duration(time.Second), SlowFirstToken: aisim.Duration(time.Second),
		TokenInterval: aisim.Duration(time.Millisecond), Garbage: true, Hang: true, Stuck: true, Down: true}
	if got := s.Knobs(); got != want {
		t.Fatalf("knobs %+v, want %+v", got, want)
	}
	if err := s.SetKnobs(aisim.Knobs{ErrorRate: -1}); err == nil {
		t.Fatal("SetKnobs accepted a bad rate")
	}
	if err := s.Update(func(k *aisim.Knobs) { k.Down = false }); err != nil || s.Knobs().Down {
		t.Fatalf("Update: %v", err)
	}
}

func TestStreams(t *testing.T) {
	t.Run("sse chat", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindOpenAI})
		b := e.must(t, "POST", "/v1/chat/completions",
			`{"model":"sim-chat","stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"messages":[{"role":"user","content":[{"type":"text","text":"a b"}]}]}`, 200)
		events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
		// role, 3 tokens, finish, usage, [DONE]
		if len(events) != 7 || events[6] != "data: [DONE]" || !strings.Contains(events[5], `"usage":{"completion_tokens":3,"prompt_tokens":2,"total_tokens":5}`) {
			t.Fatalf("events:\n%s", b)
		}
	})
	t.Run("sse completions", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindVLLM})
		b := e.must(t, "POST", "/v1/completions", `{"model":"sim-chat","prompt":["x"],"stream":true,"max_tokens":2}`, 200)
		if strings.Count(string(b), "data: ") != 3 || !strings.HasSuffix(strings.TrimSpace(string(b)), "data: [DONE]") {
			t.Fatalf("events:\n%s", b)
		}
	})
	t.Run("ndjson", func(t *testing.T) {
		for _, path := range []string{"/api/generate", "/api/chat"} {
			e := start(t, aisim.Config{Kind: probes.KindOllama})
			b := e.must(t, "POST", path, `{"model":"tiny","prompt":"a","messages":[{"role":"user","content":"b c"}],"options":{"num_predict":2}}`, 200)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			var last map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatal(err)
			}
			if len(lines) != 3 || last["done"] != true || last["eval_count"] != 2.0 || last["done_reason"] != "length" {
				t.Fatalf("%s:\n%s", path, b)
			}
		}
	})
	t.Run("token interval", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindTGI, Knobs: aisim.Knobs{TokenInterval: aisim.Duration(5 * time.Millisecond)}})
		t0 := time.Now()
		e.must(t, "POST", "/generate_stream", `{"inputs":"x","parameters":{"max_new_tokens":4}}`, 200)
		if d := time.Since(t0); d < 15*time.Millisecond {
			t.Fatalf("4 tokens 5ms apart took %v", d)
		}
	})
}

func TestShapes(t *testing.T) {
	tests := []struct {
		kind        probes.Kind
		method      string
		path, body  string
		status      int
		contains    string
		contentType string
	}{
		{probes.KindOllama, "GET", "/", "", 200, "Ollama is running", "text/plain"},
		{probes.KindOllama, "GET", "/metrics", "", 404, "404 page not found", ""},
		{probes.KindOllama, "POST", "/api/show", `{"model":"tiny-embed"}`, 200, `"capabilities":["embedding"]`, "application/json"},
		{probes.KindOllama, "POST", "/api/generate", `{"model":"nope","prompt":"x"}`, 404, `{"error":"model 'nope' not found"}`, "application/json"},
		{probes.KindOllama, "POST", "/api/embeddings", `{"model":"tiny-embed","prompt":"x"}`, 200, `"embedding":[`, "application/json"},
		{probes.KindOllama, "GET", "/v1/models", "", 200, `"owned_by":"library"`, "application/json"},
		{probes.KindLlamaCpp, "POST", "/v1/embeddings", `{"input":"x"}`, 501, "Start it with `--embeddings`", "application/json"},
		{probes.KindLlamaCpp, "POST", "/v1/chat/completions", `{b`, 500, `"type":"server_error"`, "application/json"},
		{probes.KindLlamaCpp, "GET", "/slots", "", 200, `"n_ctx":2048`, "application/json"},
		{probes.KindLlamaCpp, "GET", "/v1/models", "", 200, `"owned_by":"llamacpp"`, "application/json"},
		{probes.KindVLLM, "GET", "/v1/models", "", 200, `"max_model_len":4096`, "application/json"},
		{probes.KindVLLM, "POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, "does not exist", "application/json"},
		{probes.KindVLLM, "GET", "/metrics", "", 200, "vllm:num_requests_running", "text/plain"},
		{probes.KindOpenAI, "POST", "/v1/embeddings", `{"model":"sim-embed","input":["a","b"]}`, 200, `"index":1`, "application/json"},
		{probes.KindTEI, "POST", "/v1/embeddings", `{"input":"a"}`, 200, `"object":"embedding"`, "application/json"},
		{probes.KindTEI, "POST", "/predict", `{"inputs":"a"}`, 400, "not a classifier", "application/json"},
		{probes.KindKServe, "POST", "/v2/repository/index", `{}`, 200, `"state":"READY"`, "application/json"},
		{probes.KindKServe, "GET", "/v2/models/sim-llm", "", 200, `"text_input"`, "application/json"},
		{probes.KindKServe, "GET", "/v2/models/nope/ready", "", 404, "unknown model", "application/json"},
		{probes.KindKServe, "POST", "/v2/models/sim-llm/infer", `{"inputs":[{"name":"text_input","data":["hi"]}]}`, 200, "Hello from aisim", "application/json"},
		{probes.KindKServe, "POST", "/v2/models/sim-classifier/infer", `{"inputs":[{"name":"text","data":["good"]}]}`, 200, `"shape":[1,2]`, "application/json"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+" "+tt.method+" "+tt.path, func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tt.kind})
			req, _ := http.NewRequest(tt.method, e.url+tt.path, strings.NewReader(tt.body))
			resp, err := e.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !bytes.Contains(b, []byte(tt.contains)) || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.contentType) {
				t.Fatalf("status %d, type %q, body %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindTEI})
	a := e.must(t, "POST", "/embed", `{"inputs":["hello","world"]}`, 200)
	b := e.must(t, "POST", "/embed", `{"inputs":["hello","world"]}`, 200)
	if !bytes.Equal(a, b) {
		t.Fatalf("embeddings differ:\n%s\n%s", a, b)
	}
	var v [][]float64
	if err := json.Unmarshal(a, &v); err != nil || len(v) != 2 || slices.Equal(v[0], v[1]) {
		t.Fatalf("vectors %v, %v", v, err)
	}
}

func TestMetricsCount(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp})
	e.must(t, "POST", "/v1/chat/completions", `{"max_tokens":4,"messages":[{"role":"user","content":"one two three"}]}`, 200)
	b := e.must(t, "GET", "/metrics", "", 200)
	for _, want := range []string{"llamacpp:prompt_tokens_total 3\n", "llamacpp:tokens_predicted_total 4\n"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Fatalf("metrics lack %q:\n%s", want, b)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var d aisim.Duration
	for in, want := range map[string]time.Duration{`"1.5s"`: 1500 * time.Millisecond, `2`: 2 * time.Second, `"0s"`: 0} {
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v, %v", in, time.Duration(d), err)
		}
	}
	if err := json.Unmarshal([]byte(`true`), &d); err == nil {
		t.Error("accepted true")
	}
	b, _ := json.Marshal(aisim.Duration(250 * time.Millisecond))
	if string(b) != `"250ms"` {
		t.Errorf("marshal %s", b)
	}
}

func TestEndless(t *testing.T) {
	for _, tc := range []struct {
		kind       probes.Kind
		path, body string
	}{
		{probes.KindOpenAI, "/v1/chat/completions", `{"model":"sim-chat","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"a"}]}`},
		{probes.KindVLLM, "/v1/completions", `{"model":"sim-chat","prompt":"x","stream":true,"max_tokens":1}`},
		{probes.KindOllama, "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"b"}],"options":{"num_predict":1}}`},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tc.kind, Knobs: aisim.Knobs{Endless: true}})
			resp, err := e.c.Post(e.url+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// Far past the token limit of 1, the stream still goes on.
			const want = 64 << 10
			n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, want))
			if err != nil || n != want {
				t.Fatalf("read %d bytes of an endless stream, %v; want %d", n, err, want)
			}
		})
	}
}

func TestDrip(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{Drip: aisim.Duration(time.Millisecond)}})
	// Headers come at once; the body, a byte at a time, is the same body.
	resp, err := e.c.Get(e.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(b) != `{"status":"ok"}` {
		t.Fatalf("dripped /health = %d %q, %v", resp.StatusCode, b, err)
	}
}

func TestRedirectTo(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOpenAI})
	if err := e.sim.SetRedirectTo("not a url"); err == nil {
		t.Fatal("SetRedirectTo accepted a relative URL")
	}
	if err := e.sim.SetRedirectTo("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	e.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := e.c.Get(e.url + "/v1/models?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "http://127.0.0.1:1/v1/models?x=1" {
		t.Fatalf("redirect = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.must(t, "GET", "/aisim/knobs", "", 200) // control requests are not redirected
}
