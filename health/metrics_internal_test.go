package health

import "testing"

// TestLookupsDoNotAllocate: a check finds its plugin's series and its
// label pairs, made at its first check, without allocating.
func TestLookupsDoNotAllocate(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.plugin("p")
	constPair("probe", "liveness")
	if n := testing.AllocsPerRun(100, func() { m.plugin("p") }); n != 0 {
		t.Errorf("plugin of a known id: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { constPair("probe", "liveness") }); n != 0 {
		t.Errorf("constPair of a known pair: %v allocations", n)
	}
	if a, b := constPair("result", "success"), constPair("result", "success"); a != b || a.GetName() != "result" || a.GetValue() != "success" {
		t.Errorf("constPair: %v and %v, want one result=success pair", a, b)
	}
}
