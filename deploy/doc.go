// Package deploy holds the configs of the compose stack (compose.yaml at
// the repository's root): the agent's core.yaml (deploy/vitals) and
// Prometheus's prometheus.yml (deploy/prometheus); the alert rules,
// Alertmanager config and Grafana dashboards come from alerts/ and
// dashboards/. Its Go test loads compose.yaml with compose-go, since no
// Docker engine runs in CI, and checks that every mounted file exists and
// that every service runs the config that is in the repository.
package deploy
