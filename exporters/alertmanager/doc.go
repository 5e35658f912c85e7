// Package alertmanager pushes the agent's own alerts to Alertmanagers over
// their v2 API (POST /api/v2/alerts), for users who run Alertmanager but no
// Prometheus.
//
// It is built like Prometheus' rule manager and notifier. An Evaluator reads
// the agent's own metrics (the Gatherer behind /metrics) every interval and
// evaluates a few rules of alerts/vitals.rules.yml on them in Go: AI plugin
// unhealthy, stuck and lost, host plugin failed, config reload failed. The
// alert names, labels and annotations come from the embedded rules file
// (package alerts), so one Alertmanager config routes and inhibits both
// Prometheus' alerts and these. An alert goes pending, fires after the
// rule's "for", is resent every resend interval while it fires with endsAt
// set a few intervals ahead (an agent that dies lets its alerts resolve on
// their own), and is sent resolved once its condition clears (and resent so
// for 15 minutes, as Prometheus does).
//
// A Notifier queues alerts (bounded; the oldest are dropped and counted when
// it is full), sends them in batches to every Alertmanager at once with a
// timeout per send, and counts what it sent, failed to send and dropped
// (vitals_alertmanager_* metrics). The agent wires both from core.alerting.
package alertmanager
