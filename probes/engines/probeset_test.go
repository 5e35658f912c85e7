package engines_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/ollama"
)

// set is the probe set of kind k.
func set(k probes.Kind) probes.ProbeSet { return engines.Registry().Probes(k) }

// resources is the resource probe of kind k, reading /proc.
func resources(k probes.Kind) probes.Probe {
	return probes.ProcessProbe(func(pid int) (probes.ProcessStats, error) { return probes.ReadProcess(nil, pid) })
}

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
	d, err := engines.Registry().Detect(ctx, c, base, probes.DetectOptions{Kind: kind, Models: []string{"sim-llm"}})
	if err != nil {
		t.Fatal(err)
	}
	tg := probes.Target{ID: "t", BaseURL: base, Kind: d.Kind, Models: d.Models, Capabilities: d.Capabilities}
	if kind == probes.KindOpenAI {
		// A server of several models says nothing of what they do; its
		// target names the model to use.
		tg.Model = "sim-chat"
	}
	return tg
}

func TestProbesPerKind(t *testing.T) {
	cases := []struct {
		kind      probes.Kind
		modelType string
		op        string
		tokens    bool
	}{
		{probes.KindOpenAI, "", probes.OpChat, true},
		{probes.KindLlamaCpp, "", probes.OpChat, true},
		{probes.KindLlamaCpp, "embedding", probes.OpEmbeddings, false},
		{probes.KindVLLM, "", probes.OpChat, true},
		{probes.KindOllama, "", probes.OpChat, true},
		{probes.KindTGI, "", probes.OpCompletion, true},
		{probes.KindTEI, "", probes.OpEmbeddings, false},
		{probes.KindTEI, "reranker", probes.OpRerank, false},
		{probes.KindKServe, "", probes.OpInfer, false},
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, tc := range cases {
		t.Run(string(tc.kind)+"-"+tc.modelType, func(t *testing.T) {
			_, base := serve(t, aisim.Config{Kind: tc.kind, ModelType: tc.modelType})
			if tc.kind == probes.KindOllama {
				warm(t, c, base, "tiny:latest")
			}
			tg := detected(t, c, tc.kind, base)
			ctx := context.Background()
			cfg := probes.Config{Timeout: 5 * time.Second, MaxTokens: 2}
			if _, err := probes.Run(ctx, set(tg.Kind).Liveness, c, tg, cfg, nil); err != nil {
				t.Errorf("liveness: %v", err)
			}
			if _, err := probes.Run(ctx, set(tg.Kind).Readiness, c, tg, cfg, nil); err != nil {
				t.Errorf("readiness: %v", err)
			}
			if op := set(tg.Kind).SyntheticOp(tg); op != tc.op {
				t.Fatalf("operation = %q, want %q (%+v)", op, tc.op, tg)
			}
			res, err := probes.Run(ctx, set(tg.Kind).Synthetic, c, tg, cfg, nil)
			if err != nil {
				t.Fatalf("synthetic: %v", err)
			}
			if res.Operation != tc.op || (tc.tokens && (res.CompletionTokens < 1 || res.CompletionTokens > 4)) {
				t.Errorf("synthetic = %+v", res)
			}
			// aisim's answer is longer than the budget: cut at it, the
			// answer is good (finish reason length, no error).
			if tc.tokens && res.FinishReason != "length" {
				t.Errorf("finish reason = %q, want length: %+v", res.FinishReason, res)
			}
			if tc.tokens && tc.op == probes.OpChat && res.TimeToFirstToken <= 0 {
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
	_, err := probes.Run(context.Background(), set(probes.KindOllama).Readiness, c, tg, probes.Config{}, nil)
	if !errors.Is(err, probes.ErrNotReady) || probes.Classify(err) != probes.ClassNotReady {
		t.Errorf("missing model: %v (%s)", err, probes.Classify(err))
	}
	if set(probes.KindAuto).Readiness != nil {
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
		pid, err := probes.FindListener(nil, port)
		if err != nil || pid != os.Getpid() {
			t.Fatalf("FindListener(%d) = %d, %v; want %d", port, pid, err, os.Getpid())
		}
		tg := probes.Target{ID: "r", BaseURL: base, Kind: kind, PID: pid}
		if kind == probes.KindOllama {
			warm(t, c, base, "tiny:latest")
		}
		res, err := probes.Run(context.Background(), resources(kind), c, tg, probes.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Process == nil || res.Process.ResidentBytes <= 0 || res.Process.CPUSeconds <= 0 {
			t.Errorf("%s process = %+v", kind, res.Process)
		}
		sig, err := set(kind).Signals(context.Background(), c, tg)
		if err != nil {
			t.Fatal(err)
		}
		if kind == probes.KindLlamaCpp && !sig.Has(probes.FieldRequestsRunning|probes.FieldSlots) {
			t.Errorf("no server signals: %+v", sig)
		}
		if kind == probes.KindOllama && (len(sig.LoadedModels) == 0 || sig.LoadedModels[0].SizeBytes <= 0) {
			t.Errorf("no model memory: %+v", sig)
		}
	}
	if _, err := probes.FindListener(nil, 1); !errors.Is(err, probes.ErrNoListener) {
		t.Errorf("port 1: %v", err)
	}
}

// Each kind's probe set reads its engine's signals from the simulator.
func TestSignalsPerKind(t *testing.T) {
	gauges := probes.FieldRequestsRunning | probes.FieldRequestsWaiting
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		sim, kind probes.Kind
		engine    probes.Engine
		want      probes.Field
	}{
		{probes.KindVLLM, probes.KindVLLM, probes.EngineVLLM, gauges | probes.FieldGeneratedTokens},
		{aisim.KindSGLang, probes.KindOpenAI, probes.EngineSGLang, gauges | probes.FieldGeneratedTokens},
		{probes.KindLlamaCpp, probes.KindLlamaCpp, probes.EngineLlamaCpp, gauges | probes.FieldGeneratedTokens | probes.FieldSlots},
		{probes.KindTGI, probes.KindTGI, probes.EngineTGI, gauges},
		{probes.KindTEI, probes.KindTEI, probes.EngineTEI, probes.FieldRequestsWaiting},
		{probes.KindOllama, probes.KindOllama, probes.EngineOllama, probes.FieldLoadedModels},
	} {
		t.Run(string(tc.sim), func(t *testing.T) {
			_, base := serve(t, aisim.Config{Kind: tc.sim})
			s, err := set(tc.kind).Signals(context.Background(), c, probes.Target{BaseURL: base, Kind: tc.kind})
			if err != nil {
				t.Fatal(err)
			}
			if s.Engine != tc.engine || !s.Has(tc.want) {
				t.Fatalf("signals %+v, want engine %s with %s", s, tc.engine, tc.want)
			}
		})
	}
	// A plain OpenAI-compatible server has no engine metrics to read: its
	// 404 is no signals (probes.ErrNoSignals), not a failed read counted
	// at every check.
	_, base := serve(t, aisim.Config{Kind: probes.KindOpenAI})
	s, err := set(probes.KindOpenAI).Signals(context.Background(), c, probes.Target{BaseURL: base})
	if !errors.Is(err, probes.ErrNoSignals) || s.Reported != 0 {
		t.Errorf("signals of a server without metrics: %+v, %v; want none and probes.ErrNoSignals", s, err)
	}
	// One whose /metrics fails, or is no engine's, is an error.
	for name, h := range map[string]http.HandlerFunc{
		"500":        func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"not engine": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("go_goroutines 7\n")) },
	} {
		srv := httptest.NewServer(h)
		if _, err := set(probes.KindOpenAI).Signals(context.Background(), c, probes.Target{BaseURL: srv.URL}); err == nil || errors.Is(err, probes.ErrNoSignals) {
			t.Errorf("%s: %v, want a failed read", name, err)
		}
		srv.Close()
	}
}

// warm loads model on the Ollama server at base for good, as a user's
// request with keep_alive -1 would: probes never load one, and send an
// inference only to a model kept for good.
func warm(t *testing.T, c *http.Client, base, model string) {
	t.Helper()
	_, err := ollama.New(c, base).ChatStream(context.Background(), ollama.ChatRequest{
		Model: model, Messages: []ollama.Message{{Role: "user", Content: "hi"}},
		Options: map[string]any{"num_predict": 1}, KeepAlive: -1})
	if err != nil {
		t.Fatal(err)
	}
}

// An Ollama's runner blobs come from /api/show once per model version,
// not at every check: the signals of three checks ask it once.
func TestOllamaBlobShownOnce(t *testing.T) {
	s, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Preload(t.Context(), "tiny:latest"); err != nil {
		t.Fatal(err)
	}
	var shows atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/show" {
			shows.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { s.Close(); srv.Close() })
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for range 3 {
		sig, err := set(probes.KindOllama).Signals(t.Context(), c, probes.Target{BaseURL: srv.URL, Kind: probes.KindOllama})
		if err != nil {
			t.Fatal(err)
		}
		if len(sig.LoadedModels) != 1 || sig.LoadedModels[0].BlobDigest != "sha256:"+aisim.BlobDigest("tiny:latest") {
			t.Fatalf("loaded models %+v, want tiny:latest with its blob", sig.LoadedModels)
		}
	}
	if n := shows.Load(); n != 1 {
		t.Fatalf("/api/show asked %d times over three checks, want once", n)
	}
}
