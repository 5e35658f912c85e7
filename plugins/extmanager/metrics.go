package extmanager

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/labelpair"
	"github.com/vitals-dev/vitals/probes"
)

// metrics exports the catalog as it is at scrape time (so no series
// outlives its plugin) and counts catalog events and discovery errors.
type metrics struct {
	catalog *catalog.Catalog

	info, capability, models, perSource *prometheus.Desc
	families                            [4]family // of those descs
	events                              *prometheus.CounterVec
	discoveryErrors                     *prometheus.CounterVec
	busRejected                         *prometheus.CounterVec
	counters                            *prometheus.Registry // the three above, for GatherSelf

	mu     sync.Mutex // one walk at a time over the fields below
	series map[string]*pluginSeries
	gen    uint64
	gauges int // the series of the last walk
}

func newMetrics(c *catalog.Catalog) *metrics {
	m := &metrics{
		catalog: c, series: map[string]*pluginSeries{},
		families: [...]family{
			{"vitals_ai_plugin_info", "AI plugins the agent knows, with their kind, version and discovery source; always 1."},
			{"vitals_ai_plugin_capability", "The capabilities an AI plugin has, one series of value 1 each; a capability it lacks has none."},
			{"vitals_ai_plugin_models", "Models an AI plugin serves."},
			{"vitals_ai_plugins", "AI plugins known, by discovery source."},
		},
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
	desc := func(i int, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(m.families[i].name, m.families[i].help, labels, nil)
	}
	m.info = desc(0, "plugin", "kind", "version", "source")
	m.capability = desc(1, "plugin", "capability")
	m.models = desc(2, "plugin")
	m.perSource = desc(3, "source")
	for _, r := range rejectReasons {
		m.busRejected.WithLabelValues(r)
	}
	for _, s := range catalog.Sources {
		m.discoveryErrors.WithLabelValues(string(s))
		for _, e := range catalog.EventTypes {
			m.events.WithLabelValues(string(e), string(s))
		}
	}
	m.counters = prometheus.NewRegistry()
	m.counters.MustRegister(m.events, m.discoveryErrors, m.busRejected)
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
	gauges, count := m.walk()
	// Sent outside the catalog's lock: a slow scrape must not hold up the
	// checks that write the catalog.
	for _, g := range gauges {
		ch <- g
	}
	for _, s := range catalog.Sources {
		ch <- prometheus.MustNewConstMetric(m.perSource, prometheus.GaugeValue, float64(count[s]), string(s))
	}
	m.events.Collect(ch)
	m.discoveryErrors.Collect(ch)
	m.busRejected.Collect(ch)
}

// walk returns the catalog's plugins' series, in the order of their ids,
// and the plugins by source, making the series of a plugin new or
// changed since the last walk and forgetting those of plugins gone.
func (m *metrics) walk() ([]*gauge, map[catalog.Source]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	out := make([]*gauge, 0, m.gauges)
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
	m.gauges = len(out)
	return out, count
}

// GatherSelf gathers the families as a registry holding m alone does
// (TestCatalogGatherSelfMatchesRegistry compares the two), the plugins'
// series without the registry's checks of each at every scrape, which
// they pass by construction: one plugin a label set, as the catalog
// holds one plugin an id; labels fixed by their family, in the order of
// their names; values checked for UTF-8 once, when the series are made.
// The counters go through a registry of their own.
func (m *metrics) GatherSelf() ([]*dto.MetricFamily, error) {
	return agent.GatherAll(m.GatherFamilies())
}

// GatherFamilies lists the families of GatherSelf: the counters and the
// plugins by source gathered at once, the plugins' series of a family
// when it is written.
func (m *metrics) GatherFamilies() ([]agent.LazyFamily, error) {
	counters, err := m.counters.Gather()
	gauges, count := m.walk()
	out := make([]agent.LazyFamily, 0, len(counters)+len(m.families))
	for _, mf := range counters {
		out = append(out, agent.Gathered(mf))
	}
	sources := newFamily(m.families[len(m.families)-1])
	slab := make([]dto.Metric, len(catalog.Sources))
	for i, s := range catalog.Sources {
		v := &slab[i]
		v.Label = []*dto.LabelPair{labelpair.Shared("source", string(s))}
		v.Gauge = &dto.Gauge{Value: proto.Float64(float64(count[s]))}
		sources.Metric = append(sources.Metric, v)
	}
	labelpair.SortSeries(sources.Metric)
	out = append(out, agent.Gathered(sources))
	for f, desc := range [...]*prometheus.Desc{m.info, m.capability, m.models} {
		// The family's series in the registry's order: info's first label
		// is kind, capability's the capability.
		series := func() (out []*gauge, bad []string) {
			for _, g := range gauges {
				switch {
				case g.desc != desc:
				case g.invalid:
					bad = append(bad, g.desc.String())
				default:
					out = append(out, g)
				}
			}
			order := func(a, b *gauge) int { return labelpair.Compare(a.labels, b.labels) }
			if !slices.IsSortedFunc(out, order) {
				slices.SortStableFunc(out, order)
			}
			return out, bad
		}
		out = append(out, agent.LazyFamily{
			Name: m.families[f].name, Help: m.families[f].help, Type: dto.MetricType_GAUGE,
			Gather: func() (*dto.MetricFamily, []string, error) {
				gs, bad := series()
				mf := newFamily(m.families[f])
				slab := make([]dto.Metric, len(gs))
				for i, g := range gs {
					g.write(&slab[i])
					mf.Metric = append(mf.Metric, &slab[i])
				}
				return mf, bad, nil
			},
			Text: func(w *agent.SeriesWriter) []string {
				gs, bad := series()
				for _, g := range gs {
					w.Value(g.labels, g.v, nil)
					w.Next()
				}
				return bad
			},
		})
	}
	return out, err
}

// The catalog's series are gathered beside the agent's registry, a
// family at a time.
var _ agent.FamilyGatherer = (*metrics)(nil)

// family is the name, help and type of one of the catalog's gauge
// families, as GatherSelf writes them.
type family struct{ name, help string }

func newFamily(f family) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: dto.MetricType_GAUGE.Enum()}
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
		ls := labels[n:len(labels):len(labels)]
		e.gauges = append(e.gauges, gauge{desc: desc, labels: ls, v: v, invalid: !labelpair.Valid(ls)})
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
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	v       float64
	invalid bool // a label value is not UTF-8
}

func (g *gauge) Desc() *prometheus.Desc { return g.desc }

// Write implements prometheus.Metric, with one allocation.
func (g *gauge) Write(out *dto.Metric) error {
	g.write(out)
	return nil
}

func (g *gauge) write(out *dto.Metric) {
	o := &struct {
		g dto.Gauge
		v float64
	}{v: g.v}
	o.g.Value = &o.v
	out.Label, out.Gauge = g.labels, &o.g
}
