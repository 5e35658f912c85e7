package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HostMetrics are the host's own metrics: plugin states and lifecycle
// timings, config reloads and startup time.
type HostMetrics struct {
	state    *prometheus.GaugeVec
	info     *prometheus.GaugeVec
	duration *prometheus.HistogramVec
	steps    *prometheus.CounterVec
	// abandoned is 1 for a plugin the host gave up on (a timed-out step
	// still runs), absent otherwise.
	abandoned *prometheus.GaugeVec
	reloads   *prometheus.CounterVec
	reloadOK  prometheus.Gauge
	reloadTS  prometheus.Gauge
	startup   prometheus.Gauge
}

// NewHostMetrics creates the host metrics and registers them with reg.
func NewHostMetrics(reg prometheus.Registerer) (*HostMetrics, error) {
	m := &HostMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_plugin_state",
			Help: "Lifecycle state of each plugin: 1 for the state it is in, 0 for the others.",
		}, []string{"plugin", "state"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_plugin_info",
			Help: "Metadata of each plugin that has been built; always 1.",
		}, []string{"plugin", "version", "priority"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitals_plugin_lifecycle_duration_seconds",
			Help:    "Time each lifecycle step (initialize, start, reload, stop) of each plugin took.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 15, 60},
		}, []string{"plugin", "step"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_plugin_lifecycle_steps_total",
			Help: "Lifecycle steps run, by plugin, step and outcome (success, error, panic, timeout, abandoned: not run because an earlier step that timed out still ran).",
		}, []string{"plugin", "step", "outcome"}),
		abandoned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_plugin_abandoned",
			Help: "1 for a plugin the host gave up on: a lifecycle step timed out and was still running when the next was due, so the plugin is never stepped again.",
		}, []string{"plugin"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_config_reloads_total",
			Help: "Config reloads attempted, by result (success, rejected, partial).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_config_last_reload_successful",
			Help: "Whether the last config reload was applied (1) or rejected or partly failed (0).",
		}),
		reloadTS: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config load or reload that was applied in full.",
		}),
		startup: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_agent_startup_duration_seconds",
			Help: "Time the agent took to initialize and start its plugins.",
		}),
	}
	for _, c := range []prometheus.Collector{m.state, m.info, m.duration, m.steps, m.abandoned, m.reloads, m.reloadOK, m.reloadTS, m.startup} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"success", "rejected", "partial"} {
		m.reloads.WithLabelValues(r)
	}
	m.reloadOK.Set(1)
	m.reloadTS.SetToCurrentTime()
	return m, nil
}

func (m *HostMetrics) setState(plugin string, st State) {
	for _, s := range States {
		v := 0.0
		if s == st {
			v = 1
		}
		m.state.WithLabelValues(plugin, string(s)).Set(v)
	}
}

func (m *HostMetrics) setInfo(md Metadata) {
	m.info.DeletePartialMatch(prometheus.Labels{"plugin": md.Name})
	m.info.WithLabelValues(md.Name, md.Version, md.Priority.String()).Set(1)
}

func (m *HostMetrics) observeStep(plugin, step, outcome string, d time.Duration) {
	m.duration.WithLabelValues(plugin, step).Observe(d.Seconds())
	m.steps.WithLabelValues(plugin, step, outcome).Inc()
}

// ObserveReload records the result of a reload: success, rejected (bad
// config, nothing changed) or partial (applied, but a plugin failed).
func (m *HostMetrics) ObserveReload(result string) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(result).Inc()
	if result == "success" {
		m.reloadOK.Set(1)
		m.reloadTS.SetToCurrentTime()
	} else {
		m.reloadOK.Set(0)
	}
}
