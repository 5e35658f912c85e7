package alertmanager

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the push's collectors. The alertmanager label is a configured
// URL, so it is bounded by the config.
type Metrics struct {
	sent        *prometheus.CounterVec
	errors      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	dropped     prometheus.Counter
	queueLength prometheus.Gauge
	queueCap    prometheus.Gauge
	targets     prometheus.Gauge
	alerts      *prometheus.GaugeVec
	evalFailed  prometheus.Counter

	mu    sync.Mutex
	known map[string]bool
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_alertmanager_alerts_sent_total",
			Help: "Alerts the agent delivered to each Alertmanager (a 2xx answer to POST /api/v2/alerts).",
		}, []string{"alertmanager"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_alertmanager_alerts_errors_total",
			Help: "Alerts in sends to each Alertmanager that failed (connection error, timeout or non-2xx answer).",
		}, []string{"alertmanager"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitals_alertmanager_send_duration_seconds",
			Help:    "Duration of each POST of a batch of alerts to each Alertmanager.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30},
		}, []string{"alertmanager"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_alertmanager_alerts_dropped_total",
			Help: "Alerts dropped: the queue was full, or no Alertmanager took the batch.",
		}),
		queueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_alertmanager_queue_length",
			Help: "Alerts waiting to be sent.",
		}),
		queueCap: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_alertmanager_queue_capacity",
			Help: "Capacity of the queue of alerts waiting to be sent.",
		}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vitals_alertmanager_alertmanagers",
			Help: "Alertmanagers the agent sends its alerts to (core.alerting.alertmanagers).",
		}),
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_alertmanager_alerts",
			Help: "The agent's own alerts by state (pending, firing), as its last evaluation found them.",
		}, []string{"state"}),
		evalFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vitals_alertmanager_evaluation_failures_total",
			Help: "Evaluations of the agent's alerts that could not read every metric (the rest was still evaluated).",
		}),
	}
	for _, s := range []string{"pending", "firing"} {
		m.alerts.WithLabelValues(s)
	}
	if reg != nil {
		var errs []error
		for _, c := range m.collectors() {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sent, m.errors, m.duration, m.dropped, m.queueLength, m.queueCap, m.targets, m.alerts, m.evalFailed}
}

// use sets the Alertmanagers in use: their series start at 0, and those of
// Alertmanagers no longer configured are deleted.
func (m *Metrics) use(urls []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for _, u := range urls {
		keep[u] = true
		m.sent.WithLabelValues(u)
		m.errors.WithLabelValues(u)
	}
	for u := range m.known {
		if !keep[u] {
			l := prometheus.Labels{"alertmanager": u}
			m.sent.Delete(l)
			m.errors.Delete(l)
			m.duration.Delete(l)
		}
	}
	m.known = keep
	m.targets.Set(float64(len(urls)))
}
