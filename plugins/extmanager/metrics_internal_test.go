package extmanager

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/heaptest"
	"github.com/vitals-dev/vitals/probes"
)

// TestCatalogSeriesAreSmall: what a target's catalog series (its info,
// capabilities and model count) hold once a scrape has made them stays
// small, their label pairs shared: every byte of it is held a thousand
// times at 1000 targets. (It was 1939 bytes as const metrics, each with
// label pairs of its own.)
func TestCatalogSeriesAreSmall(t *testing.T) {
	c := catalog.New(nil)
	const n = 1000
	for i := range n {
		id := fmt.Sprintf("t%05d", i)
		if err := c.Upsert(catalog.Spec{ID: id, Source: catalog.SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:8000"}); err != nil {
			t.Fatal(err)
		}
		c.SetDetection(id, probes.Detection{Kind: probes.KindOpenAI, Version: "0.9.1", Models: []probes.Model{{ID: "m"}},
			Capabilities: []probes.Capability{probes.CapChat, probes.CapCompletion}}, nil)
	}
	m := newMetrics(c)
	collect := func() {
		ch := make(chan prometheus.Metric, 64)
		go func() { m.Collect(ch); close(ch) }()
		for range ch {
		}
	}
	heaptest.PerItem(t, "a target's catalog series", n, 640, func() {
		collect()
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	if got, err := testutil.GatherAndCount(reg, "vitals_ai_plugin_info", "vitals_ai_plugin_capability", "vitals_ai_plugin_models"); err != nil || got != 4*n {
		t.Errorf("%d series, %v; want %d", got, err, 4*n)
	}
	runtime.KeepAlive(m)
}
