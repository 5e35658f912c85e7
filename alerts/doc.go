// Package alerts holds the Prometheus alert rules for Vitals
// (vitals.rules.yml), their promtool unit tests (*_test.yml), the
// Alertmanager config (alertmanager.yml) and the runbooks (README.md).
//
// Its Go code embeds vitals.rules.yml (Rules), so that the agent's own
// Alertmanager push (package exporters/alertmanager) sends the same alert
// names, labels and annotations as Prometheus does with these rules. Its Go
// tests run promtool and amtool from Debian's prometheus and
// prometheus-alertmanager packages on the files.
package alerts
