package probes_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

func family(name string, kinds ...probes.Kind) probes.Family {
	live := probes.ProbeFunc(func(context.Context, *http.Client, probes.Target, probes.Config) (probes.Result, error) {
		return probes.Result{}, nil
	})
	return probes.Family{
		Name:  name,
		Kinds: kinds,
		Detect: func(context.Context, *http.Client, string, probes.DetectOptions) (probes.Detection, error) {
			return probes.Detection{}, probes.ErrNoMatch
		},
		Probes: func(probes.Kind) probes.ProbeSet { return probes.ProbeSet{Liveness: live} },
	}
}

func TestNewRegistry(t *testing.T) {
	noLive := family("x", probes.KindTGI)
	noLive.Probes = func(probes.Kind) probes.ProbeSet { return probes.ProbeSet{} }
	for _, tc := range []struct {
		name string
		fams []probes.Family
		want string
	}{
		{"kind twice", []probes.Family{family("a", probes.KindOllama), family("b", probes.KindOllama)}, `kind ollama is already family "a"'s`},
		{"name twice", []probes.Family{family("a", probes.KindOllama), family("a", probes.KindTGI)}, `family "a" registered twice`},
		{"no name", []probes.Family{family("", probes.KindOllama)}, "family 0 has no name"},
		{"no kinds", []probes.Family{family("a")}, `family "a": needs kinds`},
		{"unknown kind", []probes.Family{family("a", "sglang")}, `kind "sglang" is not a probes.Kind`},
		{"no liveness", []probes.Family{noLive}, "kind tgi has no liveness probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := probes.NewRegistry(tc.fams...)
			if err == nil || r != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRegistry = %v, %v; want an error with %q", r, err, tc.want)
			}
		})
	}
	r, err := probes.NewRegistry(family("a", probes.KindOllama), family("b", probes.KindTGI, probes.KindTEI))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := r.Family(probes.KindTEI); !ok || f.Name != "b" {
		t.Fatalf("TEI: %+v, %v", f, ok)
	}
	if _, err := r.Detect(context.Background(), nil, "http://127.0.0.1:1", probes.DetectOptions{Kind: probes.KindKServe}); err == nil {
		t.Fatal("detected a kind no family owns")
	}
}
