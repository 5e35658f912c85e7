package llamacpp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/llamacpp"
)

// testdata/router-models.json is a router's GET /models, written from
// llama.cpp's source (tools/server/server-models.cpp, get_router_models;
// keys sorted, as its JSON library writes them): one model of each status,
// one found by an alias, and one whose server exited with an error.
func TestDecodeRouterModels(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "router-models.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := llamacpp.DecodeModels(b)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Router() || !l.Written() {
		t.Fatalf("Router %v, Written %v; want a router's list", l.Router(), l.Written())
	}
	want := map[string]string{"Qwen3-0.6B-Q8_0": "loaded", "gemma-3-4b-it-Q4_K_M": "unloaded", "SmolLM2-135M-Q8_0": "sleeping",
		"Llama-3.2-1B-Q4_K_M": "loading", "ggml-org/broken-GGUF": "unloaded"}
	for id, st := range want {
		m, ok := l.Find(id)
		if !ok || m.State() != st {
			t.Errorf("%s: %+v, %v; want status %s", id, m, ok, st)
		}
	}
	if m, ok := l.Find("qwen"); !ok || m.ID != "Qwen3-0.6B-Q8_0" {
		t.Errorf("alias qwen: %+v, %v", m, ok)
	}
	if m, _ := l.Find("ggml-org/broken-GGUF"); !m.Status.Failed || m.Status.ExitCode != 1 {
		t.Errorf("failed model: %+v", m.Status)
	}
	// The single-model shapes have no status.
	for _, f := range []string{"llamacpp/v1_models.json", "llamacpp/embed_v1_models.json"} {
		l, err := llamacpp.DecodeModels(fixture(t, f))
		if err != nil || l.Router() || l.Data[0].State() != "" {
			t.Errorf("%s: Router %v, status %q, %v", f, l.Router(), l.Data[0].State(), err)
		}
	}
	var de *probes.DecodeError
	if _, err := llamacpp.DecodeModels([]byte(`{"data":[{"id":"a","status":{}}]}`)); !errors.As(err, &de) {
		t.Errorf("a status without a value: %v", err)
	}
}

// router serves an aisim llama.cpp router with a loaded, an unloaded, a
// sleeping and a loading model.
func router(t *testing.T) (*aisim.Server, string, *http.Client) {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp,
		Knobs: aisim.Knobs{LoadTime: aisim.Duration(time.Hour)},
		Router: []aisim.RouterModel{{Name: "warm", Status: aisim.RouterLoaded}, {Name: "cold"},
			{Name: "dozing", Status: aisim.RouterSleeping}, {Name: "waking", Status: aisim.RouterLoading}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return s, srv.URL, &http.Client{Transport: tr}
}

// noLoads fails the test when the probes made the router load or wake a
// model.
func noLoads(t *testing.T, s *aisim.Server) {
	t.Helper()
	if n, w := s.RouterLoads(), s.RouterWakes(); n != 0 || w != 0 {
		t.Fatalf("the probes made the router load %d models and wake %d", n, w)
	}
}

// Detection of a router sends no capability test (it would load the model
// it names), also when the router lists one model, and takes each model's
// loaded state from its status.
func TestDetectRouter(t *testing.T) {
	s, base, c := router(t)
	d, err := llamacpp.New(c, base).Detect(context.Background(), false, true)
	if err != nil {
		t.Fatal(err)
	}
	noLoads(t, s)
	loaded := map[string]bool{}
	for _, m := range d.Models {
		loaded[m.ID] = m.Loaded
	}
	if d.Kind != probes.KindLlamaCpp || len(d.Models) != 4 || !loaded["warm"] || loaded["cold"] || loaded["dozing"] || loaded["waking"] {
		t.Fatalf("detection %+v", d)
	}

	one, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp, Router: []aisim.RouterModel{{Name: "only"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(one)
	defer srv.Close()
	defer one.Close()
	d, err = llamacpp.New(c, srv.URL).Detect(context.Background(), false, true)
	if err != nil || len(d.Models) != 1 || !slices.Equal(d.Capabilities, []probes.Capability{probes.CapChat, probes.CapCompletion}) {
		t.Fatalf("one-model router: %+v, %v", d, err)
	}
	noLoads(t, one)
}

// Every probe of the family, against each model of a router: only the
// loaded one is sent an inference, the others are cold, loading or
// sleeping, and nothing is loaded or woken.
func TestRouterProbes(t *testing.T) {
	s, base, c := router(t)
	set := llamacpp.Family().Probes(probes.KindLlamaCpp)
	chat := []probes.Capability{probes.CapChat, probes.CapCompletion}
	var models []probes.Model
	for _, id := range []string{"warm", "cold", "dozing", "waking"} {
		models = append(models, probes.Model{ID: id, Capabilities: chat})
	}
	tests := []struct {
		model     string
		ready     error // nil, or what readiness wraps
		synthetic error // nil, or what the synthetic inference wraps
		loaded    []string
		asleep    float64
		busy      bool // the model's own /slots were read
	}{
		{"warm", nil, nil, []string{"warm"}, 0, true},
		{"cold", nil, probes.ErrCold, []string{"warm"}, 0, false},
		{"dozing", nil, probes.ErrAsleep, []string{"warm"}, 1, false},
		{"waking", probes.ErrLoading, probes.ErrLoading, []string{"warm"}, 0, false},
		{"", nil, nil, []string{"warm"}, 0, true}, // names none: the loaded one
	}
	ctx := context.Background()
	cfg := probes.Config{Timeout: 5 * time.Second}
	for range 3 {
		for _, tt := range tests {
			tg := probes.Target{ID: "r", BaseURL: base, Kind: probes.KindLlamaCpp, Model: tt.model, Models: models, Capabilities: chat}
			if _, err := probes.Run(ctx, set.Liveness, c, tg, cfg, nil); err != nil {
				t.Fatalf("%q liveness: %v", tt.model, err)
			}
			_, err := probes.Run(ctx, set.Readiness, c, tg, cfg, nil)
			if tt.ready == nil && err != nil || tt.ready != nil && !errors.Is(err, tt.ready) {
				t.Fatalf("%q readiness: %v, want %v", tt.model, err, tt.ready)
			}
			sig, err := set.Signals(ctx, c, tg)
			if err != nil {
				t.Fatalf("%q signals: %v", tt.model, err)
			}
			var names []string
			for _, lm := range sig.LoadedModels {
				names = append(names, lm.Name)
			}
			if !sig.Has(probes.FieldLoadedModels|probes.FieldAsleep) || !slices.Equal(names, tt.loaded) || sig.Asleep != tt.asleep ||
				sig.Has(probes.FieldSlots) != tt.busy || sig.Has(probes.FieldGeneratedTokens) != tt.busy {
				t.Fatalf("%q signals %+v", tt.model, sig)
			}
			res, err := probes.Run(ctx, set.Synthetic, c, tg, cfg, nil)
			switch want := tt.synthetic; {
			case want == nil:
				if err != nil || res.Model != "warm" || res.CompletionTokens == 0 {
					t.Fatalf("%q synthetic: %+v, %v", tt.model, res, err)
				}
			case !errors.Is(err, want) || res.Model != tt.model:
				t.Fatalf("%q synthetic: %+v, %v; want %v", tt.model, res, err, want)
			}
		}
	}
	noLoads(t, s)
	// Models unloaded by the operator are never loaded by the probes;
	// with none loaded (nor sleeping, nor loading), a target that names
	// none is cold.
	for _, m := range []string{"warm", "dozing", "waking"} {
		if err := s.SetRouterStatus(m, aisim.RouterUnloaded); err != nil {
			t.Fatal(err)
		}
	}
	tg := probes.Target{ID: "r", BaseURL: base, Kind: probes.KindLlamaCpp, Models: models[:2], Capabilities: chat}
	if _, err := probes.Run(ctx, set.Synthetic, c, tg, cfg, nil); !errors.Is(err, probes.ErrCold) {
		t.Fatalf("no model loaded: %v, want cold", err)
	}
	noLoads(t, s)
}

// NoAutoload adds autoload=false to every request, and keeps the query
// it had.
func TestNoAutoload(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery)
	}))
	defer srv.Close()
	c := llamacpp.NoAutoload(&http.Client{Transport: &http.Transport{}})
	defer c.CloseIdleConnections()
	for _, p := range []string{"/metrics", "/slots?model=a%20b", "/v1/chat/completions?autoload=true"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{"autoload=false", "autoload=false&model=a+b", "autoload=false"}
	if !slices.Equal(got, want) {
		t.Fatalf("queries %q, want %q", got, want)
	}
}
