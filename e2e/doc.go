// Package e2e is the end-to-end stack test: the vitals binary watching two
// aisim servers, Debian's Prometheus loading the repository's alert rules
// (with 1 s scrape and evaluation intervals from a test-only
// prometheus.yml), and Debian's Alertmanager with the repository's routes
// and inhibitions sending to a webhook receiver in the test. It kills one AI
// server and waits for the unhealthy alert at the webhook (and reports the
// time it took), restores it and waits for the resolved notification, makes
// the other stuck and checks that it pages once (stuck, its unhealthy alert
// inhibited until it recovers), and runs every dashboard query against that
// Prometheus.
//
// A second test runs the same without Prometheus: the agent pushes its own
// alerts to Alertmanager (core.alerting), and amtool and the webhook see
// them fire, resolve, page once for a stuck server, and resolve on their
// own at their endsAt after the agent is killed.
//
// A third has Prometheus drive the agent's /probe, blackbox_exporter
// style, for targets of a file_sd file (two aisim servers and a port with
// nothing behind it) with a viewer token, and reads vitals_probe_success
// and vitals_probe_info back through Prometheus' query API.
//
// It needs the Debian packages prometheus and prometheus-alertmanager; it
// fails without them under CI=true and is skipped otherwise.
package e2e
