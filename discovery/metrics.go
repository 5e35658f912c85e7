package discovery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	targets *prometheus.GaugeVec   // source
	dropped *prometheus.GaugeVec   // source, reason
	errors  *prometheus.CounterVec // source
	shard   *prometheus.GaugeVec   // source, state: seen, owned
	count   prometheus.Gauge
	index   prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_discovery_targets",
			Help: "Targets a discovery source yields after relabeling, before sharding.",
		}, []string{"source"}),
		dropped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_discovery_dropped_targets",
			Help: "Discovered targets of a source's last update that are not targets, by reason: relabel (a rule dropped it), invalid, duplicate (its id is taken), limit (past max targets per source).",
		}, []string{"source", "reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_discovery_source_errors_total",
			Help: "Failures of a discovery source (a refresh, a file read, a list or watch); the source keeps its last good targets.",
		}, []string{"source"}),
		shard: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_discovery_shard_targets",
			Help: "Targets of a sharded source (config, directory, or discovery: the Prometheus-style sources after relabeling) that this agent sees (state=seen) and that its shard owns and checks (state=owned).",
		}, []string{"source", "state"}),
		count: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_discovery_shards",
			Help: "How many shards split the discovered targets (1: no sharding).",
		}),
		index: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_discovery_shard_index",
			Help: "This agent's shard, 0 to count-1.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.targets, m.dropped, m.errors, m.shard, m.count, m.index}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// forget drops a removed source's series.
func (m *metrics) forget(source string) {
	m.targets.DeleteLabelValues(source)
	m.errors.DeleteLabelValues(source)
	m.dropped.DeletePartialMatch(prometheus.Labels{"source": source})
}
