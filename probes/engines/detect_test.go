package engines_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testdata holds peers/, the recorded responses of real servers, and
// written/, bodies written from the engines' documentation and source.
var testdata = filepath.Join("..", "testdata")

func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// route is one response: status and a file under probes/testdata.
type route struct {
	status int
	file   string
}

// fixtureServer serves the bodies of probes/testdata by "METHOD /path";
// anything else is the server's own 404 body.
func fixtureServer(t *testing.T, routes map[string]route, notFound string) string {
	t.Helper()
	bodies := map[string][]byte{}
	for k, r := range routes {
		b, err := os.ReadFile(filepath.Join(testdata, r.file))
		if err != nil {
			t.Fatalf("fixture (probes/testdata): %v", err)
		}
		bodies[k] = b
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		rt, ok := routes[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(notFound))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rt.status)
		w.Write(bodies[key])
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

const (
	llamaNotFound  = `{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}`
	ollamaNotFound = "404 page not found"
	// Written, as the documentation and source describe them (see
	// probes/testdata/written/README.md): axum's empty 404 (TGI, TEI),
	// FastAPI's (vLLM) and Triton's.
	hfNotFound     = ""
	vllmNotFound   = `{"detail":"Not Found"}`
	tritonNotFound = `{"error":"Not Found"}`
)

// The written engines' routes, files under probes/testdata/written.
var (
	tgiRoutes = map[string]route{
		"GET /info":   {200, "written/tgi/info.json"},
		"GET /health": {200, "written/tgi/health.txt"},
	}
	teiRoutes = map[string]route{
		"GET /info":   {200, "written/tei/info.json"},
		"GET /health": {200, "written/tei/health.txt"},
	}
	vllmRoutes = map[string]route{
		"GET /v1/models":      {200, "written/vllm/v1_models.json"},
		"GET /version":        {200, "written/vllm/version.json"},
		"POST /v1/embeddings": {400, "written/vllm/embeddings_not_supported.json"},
		"POST /v1/rerank":     {400, "written/vllm/rerank_not_supported.json"},
	}
	tritonRoutes = map[string]route{
		"GET /v2":                   {200, "written/triton/v2.json"},
		"POST /v2/repository/index": {200, "written/triton/v2_repository_index.json"},
		"GET /v2/models/bert":       {200, "written/triton/v2_models_bert.json"},
		"GET /v2/models/bert/ready": {200, "written/triton/v2_models_bert_ready.txt"},
	}
)

func llamaRoutes(embed bool) map[string]route {
	r := map[string]route{
		"GET /health":    {200, "peers/llamacpp/health.json"},
		"GET /v1/models": {200, "peers/llamacpp/v1_models.json"},
		"GET /props":     {200, "peers/llamacpp/props.json"},
		"GET /slots":     {200, "peers/llamacpp/slots.json"},
		"GET /metrics":   {200, "peers/llamacpp/metrics.txt"},
	}
	if embed {
		r["GET /v1/models"] = route{200, "peers/llamacpp/embed_v1_models.json"}
		r["POST /v1/embeddings"] = route{200, "peers/llamacpp/embed_embeddings.json"}
		delete(r, "GET /props")
	} else {
		r["POST /v1/embeddings"] = route{501, "peers/llamacpp/embeddings_not_supported.json"}
	}
	return r
}

func ollamaRoutes(loaded bool) map[string]route {
	r := map[string]route{
		"GET /":                     {200, "peers/ollama/root.txt"},
		"GET /api/version":          {200, "peers/ollama/api_version.json"},
		"GET /api/tags":             {200, "peers/ollama/api_tags.json"},
		"GET /api/ps":               {200, "peers/ollama/api_ps_idle.json"},
		"POST /api/show":            {200, "peers/ollama/api_show.json"},
		"GET /v1/models":            {200, "peers/ollama/v1_models.json"},
		"POST /v1/chat/completions": {200, "peers/ollama/v1_chat_completions.json"},
	}
	if loaded {
		r["GET /api/ps"] = route{200, "peers/ollama/api_ps_loaded.json"}
	}
	return r
}

// noSleep is an Options.Sleep that records the waits and does not wait.
type noSleep struct {
	mu    sync.Mutex
	waits []time.Duration
	then  func(n int) // called after the n-th wait (1-based)
}

func (s *noSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	s.mu.Unlock()
	if s.then != nil {
		s.then(n)
	}
	return ctx.Err()
}

func (s *noSleep) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

func opts(s *noSleep) probes.DetectOptions {
	o := probes.DefaultDetectOptions()
	o.Sleep = s.sleep
	o.StepTimeout = 2 * time.Second
	return o
}

func TestDetectFixtures(t *testing.T) {
	tests := []struct {
		name    string
		url     func(t *testing.T) string
		kind    probes.Kind
		version string
		server  string
		caps    []probes.Capability
		model   probes.Model
	}{
		{"llama.cpp", func(t *testing.T) string { return fixtureServer(t, llamaRoutes(false), llamaNotFound) },
			probes.KindLlamaCpp, "b1-de3ff81", "llama.cpp", []probes.Capability{probes.CapChat, probes.CapCompletion},
			probes.Model{ID: "tiny", Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}, ContextLength: 2048, SizeBytes: 538880, Loaded: true}},
		{"llama.cpp embeddings", func(t *testing.T) string { return fixtureServer(t, llamaRoutes(true), llamaNotFound) },
			probes.KindLlamaCpp, "", "llama.cpp", []probes.Capability{probes.CapEmbeddings},
			probes.Model{ID: "tiny-embed", Capabilities: []probes.Capability{probes.CapEmbeddings}, ContextLength: 2048, SizeBytes: 538880, Loaded: true}},
		{"ollama idle", func(t *testing.T) string { return fixtureServer(t, ollamaRoutes(false), ollamaNotFound) },
			probes.KindOllama, "0.24.0", "ollama", []probes.Capability{probes.CapChat, probes.CapCompletion},
			probes.Model{ID: "tiny:latest", Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}, ContextLength: 2048, SizeBytes: 550336}},
		{"ollama loaded", func(t *testing.T) string { return fixtureServer(t, ollamaRoutes(true), ollamaNotFound) },
			probes.KindOllama, "0.24.0", "ollama", []probes.Capability{probes.CapChat, probes.CapCompletion},
			probes.Model{ID: "tiny:latest", Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}, ContextLength: 2048, SizeBytes: 550336, MemoryBytes: 1482496, Loaded: true}},
		// Written from the engines' documentation, not recorded.
		{"tgi (written)", func(t *testing.T) string { return fixtureServer(t, tgiRoutes, hfNotFound) },
			probes.KindTGI, "3.0.1", "text-generation-router", []probes.Capability{probes.CapChat, probes.CapCompletion},
			probes.Model{ID: "HuggingFaceTB/SmolLM2-135M-Instruct", Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}, ContextLength: 2048, Loaded: true}},
		{"tei (written)", func(t *testing.T) string { return fixtureServer(t, teiRoutes, hfNotFound) },
			probes.KindTEI, "1.5.0", "text-embeddings-inference", []probes.Capability{probes.CapEmbeddings},
			probes.Model{ID: "BAAI/bge-small-en-v1.5", Capabilities: []probes.Capability{probes.CapEmbeddings}, ContextLength: 512, Loaded: true}},
		{"vllm (written)", func(t *testing.T) string { return fixtureServer(t, vllmRoutes, vllmNotFound) },
			probes.KindVLLM, "0.11.0", "vllm", []probes.Capability{probes.CapChat, probes.CapCompletion},
			probes.Model{ID: "Qwen/Qwen2.5-1.5B-Instruct", Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}, ContextLength: 32768, Loaded: true}},
		{"triton (written)", func(t *testing.T) string { return fixtureServer(t, tritonRoutes, tritonNotFound) },
			probes.KindKServe, "2.50.0", "triton", []probes.Capability{probes.CapEmbeddings},
			probes.Model{ID: "bert", Capabilities: []probes.Capability{probes.CapEmbeddings}, Loaded: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), tt.url(t), opts(&s))
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tt.kind || d.Version != tt.version || d.Server != tt.server || !slices.Equal(d.Capabilities, tt.caps) || d.Attempts != 1 {
				t.Fatalf("got %+v", d)
			}
			if len(d.Models) != 1 {
				t.Fatalf("models %+v", d.Models)
			}
			m := d.Models[0]
			if m.ID != tt.model.ID || !slices.Equal(m.Capabilities, tt.model.Capabilities) || m.ContextLength != tt.model.ContextLength ||
				m.SizeBytes != tt.model.SizeBytes || m.MemoryBytes != tt.model.MemoryBytes || m.Loaded != tt.model.Loaded {
				t.Fatalf("model %+v, want %+v", m, tt.model)
			}
			if len(s.got()) != 0 {
				t.Fatalf("slept %v", s.got())
			}
		})
	}
}

// newSim starts an aisim server and returns it with its URL.
func newSim(t *testing.T, cfg aisim.Config) (*aisim.Server, string) {
	t.Helper()
	s, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close) // runs first: ends hangs before srv.Close waits
	return s, srv.URL
}

func TestDetectAisim(t *testing.T) {
	c := func(cs ...probes.Capability) []probes.Capability { return cs }
	tests := []struct {
		kind      probes.Kind
		modelType string
		version   string
		caps      []probes.Capability
	}{
		{probes.KindOpenAI, "", "", nil},
		{probes.KindLlamaCpp, "", "b1-aisim", c(probes.CapChat, probes.CapCompletion)},
		{probes.KindLlamaCpp, "embedding", "b1-aisim", c(probes.CapEmbeddings)},
		{probes.KindVLLM, "", "0.6.3", c(probes.CapChat, probes.CapCompletion)},
		{probes.KindOllama, "", "0.24.0", c(probes.CapChat, probes.CapCompletion, probes.CapEmbeddings, probes.CapVision, probes.CapTools)},
		{probes.KindTGI, "", "3.0.1", c(probes.CapChat, probes.CapCompletion)},
		{probes.KindTEI, "", "1.5.0", c(probes.CapEmbeddings)},
		{probes.KindTEI, "reranker", "1.5.0", c(probes.CapRerank)},
		{probes.KindTEI, "classifier", "1.5.0", c(probes.CapClassification)},
		{probes.KindKServe, "", "2.50.0", c(probes.CapCompletion, probes.CapEmbeddings, probes.CapClassification)},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"/"+tt.modelType, func(t *testing.T) {
			sim, url := newSim(t, aisim.Config{Kind: tt.kind, ModelType: tt.modelType})
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), url, opts(&s))
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tt.kind || d.Version != tt.version || !slices.Equal(d.Capabilities, tt.caps) || len(d.Models) == 0 || d.Reason != "" {
				t.Fatalf("got %+v", d)
			}

			// A new version is seen by the next detection.
			if tt.version == "" {
				return
			}
			sim.SetVersion("9.9.9-new")
			d, err = engines.Registry().Detect(context.Background(), client(t), url, opts(&s))
			if err != nil || d.Version != "9.9.9-new" || d.Kind != tt.kind {
				t.Fatalf("after a version change: %+v, %v", d, err)
			}
		})
	}
}

func TestDetectUnknown(t *testing.T) {
	handler := func(status int, ctype, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	garbage, err := aisim.New(aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Garbage: true}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		h    http.Handler
	}{
		{"404 everywhere", http.NotFoundHandler()},
		{"html everywhere", handler(200, "text/html", "<!doctype html><html><body>app</body></html>")},
		{"empty object everywhere", handler(200, "application/json", "{}")},
		{"json list everywhere", handler(200, "application/json", "[1,2,3]")},
		{"empty body", handler(200, "application/json", "")},
		{"aisim garbage", garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			t.Cleanup(srv.Close)
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, opts(&s))
			if err != nil {
				t.Fatalf("unknown shape is not an error, got %v", err)
			}
			if d.Kind != probes.KindUnknown || !strings.Contains(d.Reason, "no known AI API") || !strings.Contains(d.Reason, "/v1/models") {
				t.Fatalf("got %+v", d)
			}
			if len(s.got()) != 0 {
				t.Fatalf("retried an unknown shape: %v", s.got())
			}
		})
	}
}

// A server behind an API key the agent lacks is an auth error, not an
// unknown server: the user must fix the target's credentials.
func TestDetectAuth(t *testing.T) {
	for _, kind := range []probes.Kind{probes.KindVLLM, probes.KindOpenAI} {
		t.Run(string(kind), func(t *testing.T) {
			_, url := newSim(t, aisim.Config{Kind: kind, Knobs: aisim.Knobs{APIKey: "sk-test"}})
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), url, opts(&s))
			if probes.Classify(err) != probes.ClassAuth || d.Kind != probes.KindUnknown {
				t.Fatalf("got %+v, %v (class %q), want an auth error", d, err, probes.Classify(err))
			}
			if !strings.Contains(d.Reason, "http 401") || !strings.Contains(d.Reason, "http_config") {
				t.Fatalf("reason %q does not say what to fix", d.Reason)
			}
			if len(s.got()) != 0 {
				t.Fatalf("retried refused credentials: %v", s.got())
			}
		})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(srv.Close)
	if _, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, opts(new(noSleep))); probes.Classify(err) != probes.ClassAuth {
		t.Fatalf("403 everywhere: %v, want auth", err)
	}
}

func TestDetectDoesNotSettleForGeneric(t *testing.T) {
	// Ollama also serves /v1/models; while /api/version fails with 5xx,
	// detection must not call it a generic OpenAI server.
	tests := []struct {
		name     string
		failures int64
		want     probes.Kind
		attempts int
	}{
		{"recovers", 1, probes.KindOllama, 2},
		{"falls back to generic", 100, probes.KindOpenAI, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(flaky(sim, "/api/version", tt.failures))
			t.Cleanup(srv.Close)
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, opts(&s))
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tt.want || d.Attempts != tt.attempts {
				t.Fatalf("got kind %s after %d attempts, want %s after %d", d.Kind, d.Attempts, tt.want, tt.attempts)
			}
		})
	}
}

func TestDetectHint(t *testing.T) {
	// counting records which paths a server was asked.
	counting := func(h http.Handler, paths *sync.Map) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			paths.Store(r.URL.Path, true)
			h.ServeHTTP(w, r)
		})
	}
	t.Run("asks only the family", func(t *testing.T) {
		sim, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
		if err != nil {
			t.Fatal(err)
		}
		var paths sync.Map
		srv := httptest.NewServer(counting(sim, &paths))
		t.Cleanup(srv.Close)
		var s noSleep
		o := opts(&s)
		o.Kind = probes.KindOllama
		d, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, o)
		if err != nil || d.Kind != probes.KindOllama {
			t.Fatalf("got %+v, %v", d, err)
		}
		for _, p := range []string{"/v2", "/info", "/v1/models"} {
			if _, ok := paths.Load(p); ok {
				t.Errorf("asked %s despite the hint", p)
			}
		}
	})
	t.Run("specific hint over generic answer", func(t *testing.T) {
		_, url := newSim(t, aisim.Config{Kind: probes.KindOpenAI})
		var s noSleep
		o := opts(&s)
		o.Kind = probes.KindVLLM
		d, err := engines.Registry().Detect(context.Background(), client(t), url, o)
		if err != nil || d.Kind != probes.KindVLLM {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("wrong hint", func(t *testing.T) {
		_, url := newSim(t, aisim.Config{Kind: probes.KindOllama})
		var s noSleep
		o := opts(&s)
		o.Kind = probes.KindKServe
		d, err := engines.Registry().Detect(context.Background(), client(t), url, o)
		if err != nil || d.Kind != probes.KindUnknown || !strings.Contains(d.Reason, "kserve") {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("bad hint", func(t *testing.T) {
		o := probes.DefaultDetectOptions()
		o.Kind = "bogus"
		d, err := engines.Registry().Detect(context.Background(), client(t), "http://127.0.0.1:1", o)
		if err == nil || d.Kind != probes.KindUnknown {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
}

// Capabilities come from what the server does, never from a model's name:
// each server here serves a model whose name says something else.
func TestCapabilitiesFromWhatTheServerDoes(t *testing.T) {
	c := func(cs ...probes.Capability) []probes.Capability { return cs }
	tests := []struct {
		name string
		url  func(t *testing.T) string
		want []probes.Capability
	}{
		{"recorded llama.cpp --embeddings, its model named tiny", func(t *testing.T) string {
			r := llamaRoutes(true)
			r["GET /v1/models"] = route{200, "peers/llamacpp/v1_models.json"}
			return fixtureServer(t, r, llamaNotFound)
		}, c(probes.CapEmbeddings)},
		{"recorded llama.cpp, its model named tiny-embed", func(t *testing.T) string {
			r := llamaRoutes(false)
			r["GET /v1/models"] = route{200, "peers/llamacpp/embed_v1_models.json"}
			return fixtureServer(t, r, llamaNotFound)
		}, c(probes.CapChat, probes.CapCompletion)},
		{"llama.cpp --embeddings named chat", func(t *testing.T) string {
			return simURL(t, aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "embedding", Knobs: aisim.Knobs{ModelName: "llama-3-chat"}})
		}, c(probes.CapEmbeddings)},
		{"llama.cpp --reranking named tiny", func(t *testing.T) string {
			return simURL(t, aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "reranker", Knobs: aisim.Knobs{ModelName: "tiny"}})
		}, c(probes.CapRerank)},
		{"llama.cpp chat named like an embedder", func(t *testing.T) string {
			return simURL(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{ModelName: "bge-embed-rerank"}})
		}, c(probes.CapChat, probes.CapCompletion)},
		{"vLLM named like a reranker", func(t *testing.T) string {
			return simURL(t, aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{ModelName: "bge-reranker-v2"}})
		}, c(probes.CapChat, probes.CapCompletion)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s noSleep
			d, err := engines.Registry().Detect(context.Background(), client(t), tt.url(t), opts(&s))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Capabilities, tt.want) {
				t.Fatalf("capabilities %v, want %v (%+v)", d.Capabilities, tt.want, d)
			}
		})
	}
}

func simURL(t *testing.T, cfg aisim.Config) string {
	t.Helper()
	_, url := newSim(t, cfg)
	return url
}

// recording serves h and keeps the requests it was sent.
type recording struct {
	h    http.Handler
	mu   sync.Mutex
	reqs []string
}

func (r *recording) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

func (r *recording) posts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		if strings.HasPrefix(q, "POST ") && q != "POST /api/show" {
			out = append(out, q)
		}
	}
	return out
}

// Detection asks for no work a server might load a model for: not of a
// server that lists several models, and not of one that answers
// /v1/models while a more specific family failed (Ollama loads a model
// for any request naming it).
func TestDetectionLoadsNoModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(http.Handler) http.Handler
		cfg  aisim.Config
	}{
		{"several models", func(h http.Handler) http.Handler { return h }, aisim.Config{Kind: probes.KindOpenAI}},
		{"ollama failing", func(h http.Handler) http.Handler { return flaky(h, "/api/version", 100) }, aisim.Config{Kind: probes.KindOllama}},
		{"ollama", func(h http.Handler) http.Handler { return h }, aisim.Config{Kind: probes.KindOllama}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := aisim.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Close)
			rec := &recording{h: tc.h(sim)}
			srv := httptest.NewServer(rec)
			t.Cleanup(srv.Close)
			var s noSleep
			if _, err := engines.Registry().Detect(context.Background(), client(t), srv.URL, opts(&s)); err != nil {
				t.Fatal(err)
			}
			if p := rec.posts(); len(p) > 0 {
				t.Fatalf("detection sent %v", p)
			}
		})
	}
}
