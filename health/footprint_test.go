package health

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

// TestEnginePluginIsSmall: what the engine holds for a target before its
// first check, its metrics' series and its scheduler item with it, stays
// small: every byte of it is held a thousand times at 1000 targets. (It
// was 1797 bytes with the target kept twice, in the plugin and in its
// status, and the error-rate window a bool a request.)
func TestEnginePluginIsSmall(t *testing.T) {
	e := New(Options{Config: DefaultConfig()})
	const n = 1000
	targets := make([]Target, n)
	for i := range targets {
		targets[i] = Target{ID: fmt.Sprintf("t%05d", i), Mode: ModeHTTP, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:8000",
			Models: []probes.Model{{ID: "m"}}, Capabilities: []probes.Capability{probes.CapChat}}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tg := range targets {
		e.Upsert(tg)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap a target", per)
	if limit := int64(1600); per > limit {
		t.Errorf("%d bytes of heap a target, want at most %d", per, limit)
	}
	runtime.KeepAlive(e)
	runtime.KeepAlive(targets)
}
