package engines_test

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// pkgOf is the import path of the package that defines function f.
func pkgOf(f any) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	slash := strings.LastIndex(name, "/")
	dot := strings.Index(name[slash+1:], ".")
	return name[:slash+1+dot]
}

// Every server kind has a family, in the package named here: a new kind
// without one, or a kind that moves, fails this test.
func TestEveryKindHasItsPackage(t *testing.T) {
	want := map[probes.Kind]string{
		probes.KindOpenAI:   "probes/openai",
		probes.KindVLLM:     "probes/openai",
		probes.KindLlamaCpp: "probes/llamacpp",
		probes.KindOllama:   "probes/ollama",
		probes.KindTGI:      "probes/hf",
		probes.KindTEI:      "probes/hf",
		probes.KindKServe:   "probes/kserve",
	}
	r := engines.Registry()
	for _, k := range probes.Kinds() {
		f, ok := r.Family(k)
		if !ok {
			t.Errorf("kind %s has no engine family", k)
			continue
		}
		pkg := pkgOf(f.Detect)
		if !strings.HasSuffix(pkg, "/"+want[k]) || !strings.HasSuffix(pkg, "/"+f.Name) {
			t.Errorf("kind %s: family %q in %s, want %s", k, f.Name, pkg, want[k])
		}
		if p := pkgOf(f.Probes); p != pkg {
			t.Errorf("kind %s: probes from %s, detection from %s", k, p, pkg)
		}
		set := f.Probes(k)
		if set.Liveness == nil {
			t.Errorf("kind %s has no liveness probe", k)
		}
		if (set.Synthetic == nil) != (set.Operation == nil) {
			t.Errorf("kind %s: a synthetic probe needs its operation and the other way round", k)
		}
	}
	if len(want) != len(probes.Kinds()) {
		t.Errorf("the table lists %d kinds, probes.Kinds() %d", len(want), len(probes.Kinds()))
	}
	for _, k := range []probes.Kind{probes.KindAuto, probes.KindUnknown} {
		if _, ok := r.Family(k); ok {
			t.Errorf("%s has a family", k)
		}
		if set := r.Probes(k); set.Liveness == nil || set.Readiness != nil || set.Synthetic != nil || set.Signals != nil {
			t.Errorf("%s: %+v, want only a liveness probe", k, set)
		}
	}
}
