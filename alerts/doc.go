// Package alerts holds the Prometheus alert rules for Vitals
// (vitals.rules.yml), their promtool unit tests (*_test.yml), the
// Alertmanager config (alertmanager.yml) and the runbooks (README.md).
// It has no Go code of its own: its Go tests run promtool and amtool from
// Debian's prometheus and prometheus-alertmanager packages on those files.
package alerts
