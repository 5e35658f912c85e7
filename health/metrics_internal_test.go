package health

import "testing"

// TestLookupsDoNotAllocate: a check finds its plugin's series, made at
// its first check, without allocating (its label pairs: labelpair's
// tests).
func TestLookupsDoNotAllocate(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.plugin("p")
	if n := testing.AllocsPerRun(100, func() { m.plugin("p") }); n != 0 {
		t.Errorf("plugin of a known id: %v allocations", n)
	}
}
