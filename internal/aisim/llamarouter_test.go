package aisim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

func routerEnv(t *testing.T, autoloadOff bool) env {
	t.Helper()
	return start(t, aisim.Config{Kind: probes.KindLlamaCpp, NoModelsAutoload: autoloadOff,
		Knobs: aisim.Knobs{LoadTime: aisim.Duration(20 * time.Millisecond)},
		Router: []aisim.RouterModel{{Name: "warm", Status: aisim.RouterLoaded}, {Name: "cold"},
			{Name: "dozing", Status: aisim.RouterSleeping}}})
}

// routerStatuses decodes a router's /models into model → status value.
func routerStatuses(t *testing.T, e env) map[string]string {
	t.Helper()
	var l struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
			Status  struct {
				Value string   `json:"value"`
				Args  []string `json:"args"`
			} `json:"status"`
		} `json:"data"`
	}
	if err := json.Unmarshal(e.must(t, http.MethodGet, "/v1/models", "", http.StatusOK), &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range l.Data {
		if m.OwnedBy != "llamacpp" || len(m.Status.Args) == 0 || l.Object != "list" {
			t.Fatalf("model %+v of list %q, want llama.cpp's router shape", m, l.Object)
		}
		out[m.ID] = m.Status.Value
	}
	return out
}

func TestRouterListsAndLoadsNothing(t *testing.T) {
	e := routerEnv(t, false)
	want := map[string]string{"warm": "loaded", "cold": "unloaded", "dozing": "sleeping"}
	for range 3 {
		if got := routerStatuses(t, e); len(got) != 3 || got["warm"] != want["warm"] || got["cold"] != want["cold"] || got["dozing"] != want["dozing"] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
		e.must(t, http.MethodGet, "/models", "", http.StatusOK)
		e.must(t, http.MethodGet, "/health", "", http.StatusOK)
		if b := e.must(t, http.MethodGet, "/props", "", http.StatusOK); !strings.Contains(string(b), `"role":"router"`) {
			t.Fatalf("router /props %s", b)
		}
		// No model named: refused, nothing loaded.
		for _, p := range []string{"/metrics", "/slots"} {
			if b := e.must(t, http.MethodGet, p, "", http.StatusBadRequest); !strings.Contains(string(b), "model name is missing") {
				t.Fatalf("%s without a model: %s", p, b)
			}
		}
		// autoload=false: a model that is not running is refused.
		e.must(t, http.MethodGet, "/metrics?model=cold&autoload=false", "", http.StatusBadRequest)
		e.must(t, http.MethodPost, "/v1/chat/completions?autoload=false", `{"model":"cold","messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest)
		e.must(t, http.MethodGet, "/slots?model=warm&autoload=false", "", http.StatusOK)
	}
	if n, w := e.sim.RouterLoads(), e.sim.RouterWakes(); n != 0 || w != 0 {
		t.Fatalf("%d loads, %d wakes from requests that must cause none", n, w)
	}
	if st := e.sim.Stats(); st.RouterLoads != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRouterAutoload(t *testing.T) {
	e := routerEnv(t, false)
	e.must(t, http.MethodPost, "/v1/chat/completions", `{"model":"cold","messages":[{"role":"user","content":"hi"}]}`, http.StatusOK)
	if s, n := e.sim.RouterStatus("cold"), e.sim.RouterLoads(); s != aisim.RouterLoaded || n != 1 {
		t.Fatalf("after a chat naming it: %s, %d loads; want loaded, 1", s, n)
	}
	e.must(t, http.MethodGet, "/props?model=dozing", "", http.StatusOK)
	if s, n := e.sim.RouterStatus("dozing"), e.sim.RouterWakes(); s != aisim.RouterLoaded || n != 1 {
		t.Fatalf("after /props?model= of a sleeping model: %s, %d wakes; want loaded, 1", s, n)
	}
	e.must(t, http.MethodGet, "/metrics?model=nope", "", http.StatusBadRequest)
	e.must(t, http.MethodPost, "/models/unload", `{"model":"cold"}`, http.StatusOK)
	e.must(t, http.MethodPost, "/models/load", `{"model":"cold"}`, http.StatusOK)
	if s, n := routerStatuses(t, e)["cold"], e.sim.RouterLoads(); s != aisim.RouterLoading || n != 2 {
		t.Fatalf("after /models/load: %s, %d loads; want loading, 2", s, n)
	}
	// A request for a loading model waits for the load, with autoload.
	e.must(t, http.MethodGet, "/slots?model=cold", "", http.StatusOK)
	if s := e.sim.RouterStatus("cold"); s != aisim.RouterLoaded {
		t.Fatalf("after waiting for it: %s", s)
	}
	if err := e.sim.SetRouterStatus("cold", aisim.RouterLoading); err != nil {
		t.Fatal(err)
	}
	if b := e.must(t, http.MethodGet, "/metrics?model=cold&autoload=false", "", http.StatusServiceUnavailable); !strings.Contains(string(b), "Loading model") {
		t.Fatalf("loading child: %s", b)
	}
	if err := e.sim.SetRouterStatus("nope", aisim.RouterLoaded); err == nil {
		t.Fatal("a status for a model the router does not have")
	}
}

func TestRouterNoAutoload(t *testing.T) {
	e := routerEnv(t, true)
	if b := e.must(t, http.MethodPost, "/v1/chat/completions", `{"model":"cold","messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest); !strings.Contains(string(b), "model is not loaded") {
		t.Fatalf("--no-models-autoload: %s", b)
	}
	// ?autoload=true still loads, as the real router does.
	e.must(t, http.MethodGet, "/props?model=cold&autoload=true", "", http.StatusOK)
	if n := e.sim.RouterLoads(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
}

func TestRouterConfig(t *testing.T) {
	for _, cfg := range []aisim.Config{
		{Kind: probes.KindVLLM, Router: []aisim.RouterModel{{Name: "a"}}},
		{Kind: probes.KindLlamaCpp, Router: []aisim.RouterModel{{Name: "a"}, {Name: "a"}}},
		{Kind: probes.KindLlamaCpp, Router: []aisim.RouterModel{{Name: ""}}},
		{Kind: probes.KindLlamaCpp, Router: []aisim.RouterModel{{Name: "a", Status: "asleep"}}},
	} {
		if _, err := aisim.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
