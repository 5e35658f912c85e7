package aisim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

type psModel struct {
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	SizeVRAM  int64     `json:"size_vram"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ps returns /api/ps by model name.
func (e env) ps(t *testing.T) map[string]psModel {
	t.Helper()
	var out struct {
		Models []psModel `json:"models"`
	}
	if err := json.Unmarshal(e.must(t, "GET", "/api/ps", "", 200), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]psModel{}
	for _, x := range out.Models {
		m[x.Name] = x
	}
	return m
}

func near(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if d := got.Sub(want); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("%s = %v, want about %v", what, got, want)
	}
}

func TestOllamaKeepAlive(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOllama})
	if len(e.ps(t)) != 0 {
		t.Fatal("a model is loaded before any request")
	}
	// /api/tags lists every model, loaded or not.
	var tags struct{ Models []struct{ Name string } }
	if err := json.Unmarshal(e.must(t, "GET", "/api/tags", "", 200), &tags); err != nil || len(tags.Models) != 3 {
		t.Fatalf("tags %+v, %v", tags, err)
	}

	// A request loads the model with the default keep-alive, 5m.
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`, 200)
	m, ok := e.ps(t)["tiny:latest"]
	if !ok || m.SizeVRAM == 0 || m.Size == 0 {
		t.Fatalf("ps after a request: %+v", e.ps(t))
	}
	near(t, "expires_at", m.ExpiresAt, time.Now().Add(5*time.Minute))

	// Reads leave expires_at exactly where it is.
	for _, read := range []struct{ method, path, body string }{
		{"GET", "/api/ps", ""}, {"GET", "/api/tags", ""}, {"POST", "/api/show", `{"model":"tiny"}`}, {"GET", "/api/version", ""}, {"GET", "/v1/models", ""},
	} {
		e.must(t, read.method, read.path, read.body, 200)
		if got := e.ps(t)["tiny:latest"].ExpiresAt; !got.Equal(m.ExpiresAt) {
			t.Fatalf("%s %s moved expires_at from %v to %v", read.method, read.path, m.ExpiresAt, got)
		}
	}

	// Every request that reaches the model moves expires_at: a named
	// keep-alive sets it, and stays for later requests that name none.
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"keep_alive":"1h"}`, 200)
	hour := e.ps(t)["tiny:latest"].ExpiresAt
	near(t, "expires_at with keep_alive 1h", hour, time.Now().Add(time.Hour))
	e.must(t, "POST", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"stream":false}`, 200)
	if again := e.ps(t)["tiny:latest"].ExpiresAt; !again.After(hour) {
		t.Fatalf("a request with no keep_alive left expires_at at %v (was %v)", again, hour)
	}
	// Numbers are seconds.
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"keep_alive":600}`, 200)
	near(t, "expires_at with keep_alive 600", e.ps(t)["tiny:latest"].ExpiresAt, time.Now().Add(10*time.Minute))
	// The OpenAI endpoints move it too.
	before := e.ps(t)["tiny:latest"].ExpiresAt
	e.must(t, "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`, 200)
	if !e.ps(t)["tiny:latest"].ExpiresAt.After(before) {
		t.Fatal("/v1/chat/completions left expires_at")
	}

	// Negative keeps it forever.
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"keep_alive":-1}`, 200)
	if y := e.ps(t)["tiny:latest"].ExpiresAt.Year(); y < 2200 {
		t.Fatalf("keep_alive -1: expires in %d", y)
	}

	// An empty prompt only loads ("load"); with keep_alive 0 it unloads.
	b := e.must(t, "POST", "/api/generate", `{"model":"tiny-vision"}`, 200)
	if !json.Valid(b) || !bytes.Contains(b, []byte(`"done_reason":"load"`)) {
		t.Fatalf("load: %s", b)
	}
	if _, ok := e.ps(t)["tiny-vision:latest"]; !ok {
		t.Fatal("an empty prompt did not load the model")
	}
	b = e.must(t, "POST", "/api/generate", `{"model":"tiny-vision","keep_alive":0}`, 200)
	if !bytes.Contains(b, []byte(`"done_reason":"unload"`)) {
		t.Fatalf("unload: %s", b)
	}
	if _, ok := e.ps(t)["tiny-vision:latest"]; ok {
		t.Fatal("keep_alive 0 with no prompt left the model loaded")
	}
	// keep_alive 0 with a prompt serves it, then unloads.
	e.must(t, "POST", "/api/embed", `{"model":"tiny-embed","input":"x","keep_alive":0}`, 200)
	if _, ok := e.ps(t)["tiny-embed:latest"]; ok {
		t.Fatal("keep_alive 0 left the model loaded after its request")
	}

	// A short keep-alive runs out.
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"keep_alive":"30ms"}`, 200)
	waitFor(t, "the model to expire", func() bool { _, ok := e.ps(t)["tiny:latest"]; return !ok })
}

func TestOllamaLoadAndEvict(t *testing.T) {
	const load = 100 * time.Millisecond
	e := start(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{LoadTime: aisim.Duration(load), MaxLoadedModels: 1, KeepAlive: aisim.Duration(time.Hour)}})
	t0 := time.Now()
	e.must(t, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`, 200)
	if d := time.Since(t0); d < load {
		t.Fatalf("a cold request took %v, want >= the %v load", d, load)
	}
	near(t, "expires_at with OLLAMA_KEEP_ALIVE 1h", e.ps(t)["tiny:latest"].ExpiresAt, time.Now().Add(time.Hour))
	// Loaded, the next does not load it again (a load would now take an
	// hour).
	e.sim.SetLoadTime(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, _, err := e.do(ctx, "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`); err != nil || st != 200 {
		t.Fatalf("a warm request: %d, %v", st, err)
	}
	// One slot: loading another evicts it.
	e.sim.SetLoadTime(0)
	e.must(t, "POST", "/api/embed", `{"model":"tiny-embed","input":"x"}`, 200)
	ps := e.ps(t)
	if _, ok := ps["tiny:latest"]; ok || len(ps) != 1 {
		t.Fatalf("after loading a second model with one slot: %+v", ps)
	}
}

// Preload leaves the model loaded for good, as keep_alive -1 does; other
// kinds have no models to preload.
func TestOllamaPreload(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindOllama})
	if err := e.sim.Preload(t.Context(), "tiny:latest"); err != nil {
		t.Fatal(err)
	}
	m, ok := e.ps(t)["tiny:latest"]
	if !ok || m.ExpiresAt.Before(time.Now().AddDate(100, 0, 0)) {
		t.Fatalf("ps after preload: %+v", e.ps(t))
	}
	if len(e.ps(t)) != 1 {
		t.Fatalf("preload loaded %d models", len(e.ps(t)))
	}
	v := start(t, aisim.Config{Kind: probes.KindVLLM})
	if err := v.sim.Preload(t.Context(), "x"); err == nil {
		t.Fatal("vllm preloaded a model")
	}
}
