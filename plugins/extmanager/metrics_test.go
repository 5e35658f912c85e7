package extmanager

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/probes"
)

// TestCatalogSeriesFollowTheCatalog: the per-plugin series are built once
// and kept between scrapes, and still show every change of the catalog at
// the next scrape: new capabilities and a new version after detection, a
// plugin that left.
func TestCatalogSeriesFollowTheCatalog(t *testing.T) {
	c := catalog.New(nil)
	m := newMetrics(c)
	for _, id := range []string{"a", "b"} {
		if err := c.Upsert(catalog.Spec{ID: id, Source: catalog.SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string) {
		t.Helper()
		if err := testutil.CollectAndCompare(m, strings.NewReader(want), "vitals_ai_plugin_info", "vitals_ai_plugin_capability", "vitals_ai_plugin_models"); err != nil {
			t.Error(err)
		}
	}
	const head = `
# HELP vitals_ai_plugin_capability The capabilities an AI plugin has, one series of value 1 each; a capability it lacks has none.
# TYPE vitals_ai_plugin_capability gauge
`
	const info = `# HELP vitals_ai_plugin_info AI plugins the agent knows, with their kind, version and discovery source; always 1.
# TYPE vitals_ai_plugin_info gauge
`
	const models = `# HELP vitals_ai_plugin_models Models an AI plugin serves.
# TYPE vitals_ai_plugin_models gauge
`
	check(info + `vitals_ai_plugin_info{kind="openai",plugin="a",source="config",version=""} 1
vitals_ai_plugin_info{kind="openai",plugin="b",source="config",version=""} 1
` + models + `vitals_ai_plugin_models{plugin="a"} 0
vitals_ai_plugin_models{plugin="b"} 0
`)
	c.SetDetection("a", probes.Detection{Kind: probes.KindOpenAI, Version: "1.2", Capabilities: []probes.Capability{probes.CapChat},
		Models: []probes.Model{{ID: "m"}}}, nil)
	c.Remove("b", catalog.SourceConfig, "gone")
	check(head + `vitals_ai_plugin_capability{capability="chat",plugin="a"} 1
` + info + `vitals_ai_plugin_info{kind="openai",plugin="a",source="config",version="1.2"} 1
` + models + `vitals_ai_plugin_models{plugin="a"} 1
`)
}

// TestCatalogScrapeDoesNotRebuild: scraping an unchanged catalog of a
// thousand plugins neither copies the catalog nor builds its series again
// (both made a scrape allocate more than ten times per plugin).
func TestCatalogScrapeDoesNotRebuild(t *testing.T) {
	c := catalog.New(nil)
	m := newMetrics(c)
	const plugins = 1000
	for i := range plugins {
		if err := c.Upsert(catalog.Spec{ID: fmt.Sprintf("p%04d", i), Source: catalog.SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	ch := make(chan prometheus.Metric, 4*plugins)
	collect := func() {
		m.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
	collect() // builds the series
	if n := testing.AllocsPerRun(5, collect); n > plugins/10 {
		t.Errorf("%.0f allocations per scrape of %d unchanged plugins, want under %d", n, plugins, plugins/10)
	}
}
