package aisim_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// doAuth sends a request with an Authorization header (none when auth is
// empty) and returns the status and body.
func (e env) doAuth(t *testing.T, method, path, body, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

func TestLlamaCppLoading(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{LoadTime: aisim.Duration(time.Hour)}})
	b := e.must(t, "GET", "/health", "", 503)
	if string(b) != `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}` {
		t.Fatalf("loading /health: %s", b)
	}
	e.must(t, "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 503)
	e.must(t, "GET", "/v1/models", "", 200) // the model lists answer while loading
	if !e.sim.Loading() {
		t.Fatal("Loading() = false while loading")
	}
	// A reload with a shorter load ends when that load does.
	const load = 50 * time.Millisecond
	e.sim.SetLoadTime(load)
	t0 := time.Now()
	e.sim.Reload()
	if err := e.sim.WaitLoaded(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < load-5*time.Millisecond {
		t.Fatalf("loaded after %v, want about %v", d, load)
	}
	e.must(t, "GET", "/health", "", 200)

	// The knob holds it loading; a reload starts another phase.
	e.sim.SetLoading(true)
	e.must(t, "GET", "/health", "", 503)
	e.sim.SetLoading(false)
	e.must(t, "GET", "/health", "", 200)
	e.must(t, "POST", "/aisim/knobs", `{"load_time":"1h"}`, 200)
	e.must(t, "POST", "/aisim/reload", "", 200)
	e.must(t, "GET", "/health", "", 503)
	e.sim.SetLoadTime(0)
	e.sim.Reload()
	e.must(t, "GET", "/health", "", 200)
}

// TestLoadingNotListening: the other kinds open their port only once
// loaded; in process their connections are reset.
func TestLoadingNotListening(t *testing.T) {
	for _, k := range []probes.Kind{probes.KindVLLM, probes.KindTGI, probes.KindTEI, probes.KindKServe, aisim.KindSGLang} {
		t.Run(string(k), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: k, Knobs: aisim.Knobs{Loading: true}})
			_, _, err := e.do(context.Background(), "GET", "/health", "")
			if c := probes.Classify(err); c != probes.ClassReset {
				t.Fatalf("while loading: %v (%s), want the connection reset", err, c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := e.sim.WaitLoaded(ctx); err == nil {
				t.Fatal("WaitLoaded returned while loading")
			}
			e.sim.SetLoading(false)
			if err := e.sim.WaitLoaded(context.Background()); err != nil {
				t.Fatal(err)
			}
			path := "/health"
			if k == probes.KindKServe {
				path = "/v2/health/ready"
			}
			e.must(t, "GET", path, "", 200)
		})
	}
}

func TestOllamaHasNoLoadingPhase(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{LoadTime: aisim.Duration(time.Hour)}})
	e.must(t, "GET", "/api/version", "", 200)
	e.must(t, "GET", "/api/ps", "", 200)
}

func TestAPIKey(t *testing.T) {
	const key = "s3cret"
	tests := []struct {
		kind          probes.Kind
		open, closed  string // GET paths: open without the key, and not
		closedBody    string // the 401 body
		method, infer string
		body          string
		auth          string // an accepted header other than "Bearer key"
		rejected      string // a header that is refused
	}{
		{probes.KindLlamaCpp, "/health", "/props", `{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}`,
			"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, key, "Basic " + key},
		{probes.KindVLLM, "/metrics", "/v1/models", `{"error":"Unauthorized"}`,
			"POST", "/v1/completions", `{"model":"sim-chat","prompt":"x"}`, "bearer " + key, "Token " + key},
		{probes.KindTGI, "/info", "", "", "POST", "/generate", `{"inputs":"x"}`, "BEARER " + strings.ToUpper(key), "Bearer wrong"},
		{probes.KindTEI, "/health", "/info", "", "POST", "/embed", `{"inputs":"x"}`, "", "Bearer wrong"},
		{aisim.KindSGLang, "/health_generate", "/v1/models", `{"error":"Unauthorized"}`, "GET", "/get_model_info", "", "", key},
		{probes.KindOllama, "", "/api/tags", `{"error":"unauthorized"}`, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`, "", key},
		{probes.KindOpenAI, "", "/v1/models", `"code":"invalid_api_key"`, "POST", "/v1/embeddings", `{"model":"sim-embed","input":"x"}`, "", "bearer " + key},
		{probes.KindKServe, "", "/v2/health/ready", `{"error":"unauthorized"}`, "GET", "/v2", "", "", key},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tt.kind})
			e.sim.SetAPIKey(key)
			if tt.open != "" {
				if st, b := e.doAuth(t, "GET", tt.open, "", ""); st != 200 {
					t.Errorf("open %s without the key: %d %s", tt.open, st, b)
				}
			}
			if tt.closed != "" {
				st, b := e.doAuth(t, "GET", tt.closed, "", "")
				if st != 401 || !strings.Contains(b, tt.closedBody) {
					t.Errorf("GET %s without the key: %d %q, want 401 %q", tt.closed, st, b, tt.closedBody)
				}
			}
			if st, b := e.doAuth(t, tt.method, tt.infer, tt.body, ""); st != 401 {
				t.Errorf("%s %s without the key: %d %s", tt.method, tt.infer, st, b)
			}
			if st, b := e.doAuth(t, tt.method, tt.infer, tt.body, tt.rejected); st != 401 {
				t.Errorf("%s %s with %q: %d %s, want 401", tt.method, tt.infer, tt.rejected, st, b)
			}
			for _, auth := range []string{"Bearer " + key, tt.auth} {
				if auth == "" {
					continue
				}
				if st, b := e.doAuth(t, tt.method, tt.infer, tt.body, auth); st != 200 {
					t.Errorf("%s %s with %q: %d %s", tt.method, tt.infer, auth, st, b)
				}
			}
			e.sim.SetAPIKey("")
			if st, b := e.doAuth(t, tt.method, tt.infer, tt.body, ""); st != 200 {
				t.Errorf("key off: %d %s", st, b)
			}
		})
	}
}

// TestAPIKeyWhileLoading: llama.cpp answers loading before it checks the
// key.
func TestAPIKeyWhileLoading(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{Loading: true, APIKey: "k"}})
	if st, b := e.doAuth(t, "GET", "/props", "", ""); st != 503 || !strings.Contains(b, "Loading model") {
		t.Fatalf("loading, no key: %d %s", st, b)
	}
	e.sim.SetLoading(false)
	if st, _ := e.doAuth(t, "GET", "/props", "", ""); st != 401 {
		t.Fatalf("loaded, no key: %d", st)
	}
	// The X-Api-Key header is accepted too.
	req, _ := http.NewRequest("GET", e.url+"/props", nil)
	req.Header.Set("X-Api-Key", "k")
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("X-Api-Key: %d", resp.StatusCode)
	}
}

// TestEndpointRefusesWhileLoading: served by Listen, an engine that opens
// its port only once loaded refuses connections while it loads, and
// answers on the same address after.
func TestEndpointRefusesWhileLoading(t *testing.T) {
	s, err := aisim.New(aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{LoadTime: aisim.Duration(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ep, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	health := func() (int, probes.ErrorClass) {
		resp, err := c.Get(ep.URL() + "/health")
		if err != nil {
			return 0, probes.Classify(err)
		}
		resp.Body.Close()
		return resp.StatusCode, ""
	}
	if st, class := health(); class != probes.ClassRefused {
		t.Fatalf("while loading: %d %s, want refused", st, class)
	}
	s.SetLoadTime(20 * time.Millisecond)
	s.Reload() // a shorter load, which ends on its own
	waitFor(t, "the port to open once loaded", func() bool { st, _ := health(); return st == 200 })
	s.SetLoading(true)
	tr.CloseIdleConnections()
	waitFor(t, "the port to close while loading", func() bool { _, class := health(); return class == probes.ClassRefused })
	s.SetLoading(false)
	waitFor(t, "the port to open again", func() bool { st, _ := health(); return st == 200 })
	if ep.Err() != nil {
		t.Fatal(ep.Err())
	}

	// llama.cpp keeps its port and answers 503.
	l, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{Loading: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	lep, err := l.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lep.Close)
	resp, err := c.Get(lep.URL() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("llama.cpp loading: %d", resp.StatusCode)
	}
}
