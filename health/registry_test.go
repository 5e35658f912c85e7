package health_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// The engine runs whatever probe set the registry gives a kind: here a
// family of the test's own, whose readiness says not ready.
func TestEngineRunsTheKindsProbeSet(t *testing.T) {
	var live, ready atomic.Int64
	fam := probes.Family{
		Name:  "fake",
		Kinds: []probes.Kind{probes.KindTGI},
		Detect: func(context.Context, *http.Client, string, probes.DetectOptions) (probes.Detection, error) {
			return probes.Detection{}, probes.ErrNoMatch
		},
		Probes: func(probes.Kind) probes.ProbeSet {
			return probes.ProbeSet{
				Liveness: probes.ProbeFunc(func(context.Context, *http.Client, probes.Target, probes.Config) (probes.Result, error) {
					live.Add(1)
					return probes.Result{}, nil
				}),
				Readiness: probes.ProbeFunc(func(context.Context, *http.Client, probes.Target, probes.Config) (probes.Result, error) {
					ready.Add(1)
					return probes.Result{}, fmt.Errorf("model warming: %w", probes.ErrNotReady)
				}),
			}
		},
	}
	reg, err := probes.NewRegistry(fam)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, fastConfig(), func(o *health.Options) { o.Registry = reg })
	r.e.Upsert(health.Target{ID: "fake", Mode: health.ModeHTTP, Kind: probes.KindTGI, Endpoint: "http://127.0.0.1:1"})
	vs := r.awaitState("fake", health.StateUnhealthy)
	last := vs[len(vs)-1]
	if last.Class != probes.ClassNotReady || last.Last == nil || last.Last.Probe != probes.Readiness {
		t.Fatalf("unhealthy as %+v, want not_ready from readiness", last)
	}
	if live.Load() == 0 || ready.Load() == 0 {
		t.Fatalf("liveness ran %d times, readiness %d", live.Load(), ready.Load())
	}
}

// The engine's code names no server kind: what differs by kind is in the
// kind's probe set, from the engine family that owns it.
func TestEngineNamesNoKind(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "probes" && strings.HasPrefix(sel.Sel.Name, "Kind") && sel.Sel.Name != "Kind" {
				t.Errorf("%s: names probes.%s", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
