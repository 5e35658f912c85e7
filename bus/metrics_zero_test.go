package bus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEveryReasonStartsAtZero: each reason constant declared in this
// package (Drop*, Malformed*, Disconnect*, Refused*, Throttle*) has its series at 0
// as soon as the metrics exist, so a reason added later cannot be missed.
func TestEveryReasonStartsAtZero(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	m := NewMetrics()
	vecs := map[string]*prometheus.CounterVec{
		"Drop": m.Dropped, "Malformed": m.Malformed, "Disconnect": m.Disconnects, "Refused": m.Refused, "Throttle": m.Throttled,
	}
	found := 0
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					for prefix, vec := range vecs {
						if !strings.HasPrefix(name.Name, prefix) {
							continue
						}
						reason, _ := strconv.Unquote(lit.Value)
						found++
						if n := testutil.CollectAndCount(vec); n == 0 {
							t.Fatalf("%s has no series", prefix)
						}
						if !hasSeries(t, vec, reason) {
							t.Errorf("%s = %q has no series at 0", name.Name, reason)
						}
					}
				}
			}
		}
	}
	if found < 10 {
		t.Fatalf("found %d reason constants; the test no longer finds them", found)
	}
}

// hasSeries reports whether vec already has a series for reason, without
// creating one.
func hasSeries(t *testing.T, vec *prometheus.CounterVec, reason string) bool {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(vec)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason && mt.GetCounter().GetValue() == 0 {
					return true
				}
			}
		}
	}
	return false
}
