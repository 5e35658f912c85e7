package extmanager

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/labelpair"
	"github.com/vitals-dev/vitals/probes"
)

// metrics exports the catalog as it is at scrape time (so no series
// outlives its plugin) and counts catalog events and discovery errors.
type metrics struct {
	catalog *catalog.Catalog

	info, capability, models, perSource *prometheus.Desc
	events                              *prometheus.CounterVec
	discoveryErrors                     *prometheus.CounterVec
	busRejected                         *prometheus.CounterVec

	mu     sync.Mutex // one Collect at a time over the fields below
	series map[string]*pluginSeries
	gen    uint64
}

func newMetrics(c *catalog.Catalog) *metrics {
	m := &metrics{
		catalog: c, series: map[string]*pluginSeries{},
		info: prometheus.NewDesc("vitals_ai_plugin_info",
			"AI plugins the agent knows, with their kind, version and discovery source; always 1.",
			[]string{"plugin", "kind", "version", "source"}, nil),
		capability: prometheus.NewDesc("vitals_ai_plugin_capability",
			"The capabilities an AI plugin has, one series of value 1 each; a capability it lacks has none.",
			[]string{"plugin", "capability"}, nil),
		models: prometheus.NewDesc("vitals_ai_plugin_models",
			"Models an AI plugin serves.",
			[]string{"plugin"}, nil),
		perSource: prometheus.NewDesc("vitals_ai_plugins",
			"AI plugins known, by discovery source.",
			[]string{"source"}, nil),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_plugin_events_total",
			Help: "Catalog changes, by event (registered, updated, version_changed, deregistered, lost) and source.",
		}, []string{"event", "source"}),
		discoveryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_discovery_errors_total",
			Help: "Discovery inputs rejected (bad manifests, bad announcements, id conflicts), by source.",
		}, []string{"source"}),
		busRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_bus_rejected_total",
			Help: "Bus announcements, heartbeats and goodbyes refused, by reason (invalid, endpoint, not_owner, catalog_full, peer_full, unknown, no_peer).",
		}, []string{"reason"}),
	}
	for _, r := range rejectReasons {
		m.busRejected.WithLabelValues(r)
	}
	for _, s := range catalog.Sources {
		m.discoveryErrors.WithLabelValues(string(s))
		for _, e := range catalog.EventTypes {
			m.events.WithLabelValues(string(e), string(s))
		}
	}
	return m
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.info
	ch <- m.capability
	ch <- m.models
	ch <- m.perSource
	m.events.Describe(ch)
	m.discoveryErrors.Describe(ch)
	m.busRejected.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	m.gen++
	out := make([]prometheus.Metric, 0, 5*len(m.series))
	count := map[catalog.Source]int{}
	m.catalog.Each(func(p *catalog.AIPlugin) {
		count[p.Source]++
		e := m.series[p.ID]
		if e == nil || !e.describes(p) {
			e = m.pluginSeries(p)
			m.series[p.ID] = e
		}
		e.gen = m.gen
		for i := range e.gauges {
			out = append(out, &e.gauges[i])
		}
	})
	for id, e := range m.series {
		if e.gen != m.gen {
			delete(m.series, id) // the plugin left the catalog
		}
	}
	m.mu.Unlock()
	// Sent outside the catalog's lock: a slow scrape must not hold up the
	// checks that write the catalog.
	for _, s := range out {
		ch <- s
	}
	for _, s := range catalog.Sources {
		ch <- prometheus.MustNewConstMetric(m.perSource, prometheus.GaugeValue, float64(count[s]), string(s))
	}
	m.events.Collect(ch)
	m.discoveryErrors.Collect(ch)
	m.busRejected.Collect(ch)
}

// pluginSeries are one plugin's series as of its kind, version, source,
// capabilities and model count. They are built when one of those changes,
// not at every scrape: building them, and copying the catalog to do so, was
// a tenth of the agent's CPU when scraped every second. They share their
// label pairs: the plugin's and its version's among its series, the
// kind's, source's and capabilities' with every plugin's. As const
// metrics, each with a pair and two strings of its own a label, they were
// most of what a target's catalog series took.
type pluginSeries struct {
	kind, version, source string
	caps                  []probes.Capability
	models                int
	id                    string
	// The plugin's label pair and its version's.
	plugin, ver dto.LabelPair
	gauges      []gauge
	gen         uint64 // the last scrape that saw the plugin
}

func (e *pluginSeries) describes(p *catalog.AIPlugin) bool {
	return e.kind == string(p.Kind) && e.version == p.Version && e.source == string(p.Source) &&
		slices.Equal(e.caps, p.Capabilities) && e.models == len(p.Models)
}

func (m *metrics) pluginSeries(p *catalog.AIPlugin) *pluginSeries {
	e := &pluginSeries{kind: string(p.Kind), version: p.Version, source: string(p.Source),
		caps: slices.Clone(p.Capabilities), models: len(p.Models), id: p.ID}
	e.plugin.Name, e.plugin.Value = &labelPlugin, &e.id
	e.ver.Name, e.ver.Value = &labelVersion, &e.version
	// Only the capabilities a plugin has: a series of 0 for every one it
	// lacks made up a third of a plugin's series.
	var caps []probes.Capability
	for _, c := range probes.Capabilities() {
		if p.HasCapability(c) {
			caps = append(caps, c)
		}
	}
	// The series' values and label lists, one piece each; a series'
	// labels are in the order of their names, as a registry wants them.
	e.gauges = make([]gauge, 0, len(caps)+2)
	labels := make([]*dto.LabelPair, 0, 4+2*len(caps)+1)
	add := func(desc *prometheus.Desc, v float64, pairs ...*dto.LabelPair) {
		n := len(labels)
		labels = append(labels, pairs...)
		e.gauges = append(e.gauges, gauge{desc: desc, labels: labels[n:len(labels):len(labels)], v: v})
	}
	add(m.info, 1, labelpair.Shared("kind", e.kind), &e.plugin, labelpair.Shared("source", e.source), &e.ver)
	for _, c := range caps {
		add(m.capability, 1, labelpair.Shared("capability", string(c)), &e.plugin)
	}
	add(m.models, float64(e.models), &e.plugin)
	return e
}

var labelPlugin, labelVersion = "plugin", "version"

// gauge is one series of the catalog's: a value under its labels, never
// changed once made.
type gauge struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	v      float64
}

func (g *gauge) Desc() *prometheus.Desc { return g.desc }

// Write implements prometheus.Metric, with one allocation.
func (g *gauge) Write(out *dto.Metric) error {
	o := &struct {
		g dto.Gauge
		v float64
	}{v: g.v}
	o.g.Value = &o.v
	out.Label, out.Gauge = g.labels, &o.g
	return nil
}
