package extmanager

import (
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent/agenttest"
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

// catalogWith is a catalog of n plugins of every source that takes specs,
// detected as kinds and versions that vary, with zero to two capabilities
// and models, ids in an order their kinds and capabilities are not in.
func catalogWith(t *testing.T, n int) *catalog.Catalog {
	t.Helper()
	c := catalog.New(nil)
	kinds := []probes.Kind{probes.KindVLLM, probes.KindOllama, probes.KindLlamaCpp, probes.KindTEI}
	caps := []probes.Capability{probes.CapEmbeddings, probes.CapChat, probes.CapCompletion}
	for i := range n {
		id := fmt.Sprintf("p%03d", (i*7)%n)
		src := []catalog.Source{catalog.SourceConfig, catalog.SourceBus}[i%2]
		spec := catalog.Spec{ID: id, Source: src}
		if src != catalog.SourceBus {
			spec.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", 10000+i)
		}
		if err := c.Upsert(spec); err != nil {
			t.Fatal(err)
		}
		d := probes.Detection{Kind: kinds[i%len(kinds)], Version: fmt.Sprintf("0.%d", i%3)}
		for j := range i % 3 {
			d.Capabilities = append(d.Capabilities, caps[(i+j)%len(caps)])
			d.Models = append(d.Models, probes.Model{ID: fmt.Sprintf("m%d", j), Capabilities: []probes.Capability{caps[(i+j)%len(caps)]}})
		}
		slices.Sort(d.Capabilities)
		c.SetDetection(id, d, nil)
	}
	return c
}

// TestCatalogGatherSelfMatchesRegistry: the catalog's series gathered by
// GatherSelf are what a registry holding the collector alone gathers, and
// stay so after plugins change and leave.
func TestCatalogGatherSelfMatchesRegistry(t *testing.T) {
	c := catalogWith(t, 40)
	m := newMetrics(c)
	m.events.WithLabelValues(string(catalog.EventRegistered), string(catalog.SourceConfig)).Add(3)
	m.discoveryErrors.WithLabelValues(string(catalog.SourceBus)).Inc()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	compare := func(when string) {
		t.Helper()
		if n := agenttest.GathersAsRegistry(t, reg, m); n != 7 {
			t.Errorf("%s: %d families, want 7", when, n)
		}
	}
	compare("at first")
	agenttest.ExposesAsGathered(t, m)
	c.SetDetection("p003", probes.Detection{Kind: probes.KindTGI, Version: "3.0", Capabilities: []probes.Capability{probes.CapChat}}, nil)
	if !c.Remove("p004", catalog.SourceBus, "goodbye") && !c.Remove("p004", catalog.SourceConfig, "gone") {
		t.Fatal("p004 not removed")
	}
	compare("after a change and a removal")
	agenttest.ExposesAsGathered(t, m)
}

// TestCatalogGatherSelfInvalidLabel: a plugin whose version is not UTF-8
// fails the gather, as it fails a registry's, and its info series is left
// out; its other series are gathered.
func TestCatalogGatherSelfInvalidLabel(t *testing.T) {
	c := catalogWith(t, 3)
	c.SetDetection("p001", probes.Detection{Kind: probes.KindVLLM, Version: "bad\xff"}, nil)
	for _, mf := range agenttest.DropsInvalid(t, newMetrics(c)) {
		if mf.GetName() == "vitals_ai_plugin_info" && len(mf.GetMetric()) != 2 {
			t.Errorf("%d info series, want the 2 valid ones", len(mf.GetMetric()))
		}
	}
}
