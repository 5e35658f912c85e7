// Package exporters holds what carries the agent's observations out of the
// process: OpenTelemetry tracing setup (package tracing), Prometheus
// collectors, Alertmanager push and the health history store. Exporters
// never import plugins; plugins and cmd/vitals wire them in.
package exporters
