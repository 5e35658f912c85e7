// Package exporters holds what carries the agent's observations out of the
// process: OpenTelemetry setup (package telemetry), Prometheus
// collectors, the Alertmanager push of the agent's own alerts (package
// alertmanager) and the health history store. Exporters never import
// plugins; plugins and cmd/vitals wire them in, and the agent host wires
// the Alertmanager push from core.alerting.
package exporters
