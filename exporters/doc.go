// Package exporters holds what carries the agent's observations out of the
// process: OpenTelemetry setup (package telemetry), Prometheus
// collectors, Alertmanager push and the health history store. Exporters
// never import plugins; plugins and cmd/vitals wire them in.
package exporters
