// Package dashboards holds the Grafana dashboards of Vitals, built as code
// with grafana-foundation-sdk (build.go) and committed as the JSON files
// Grafana provisions (ai-plugins-overview.json, ai-plugin-detail.json,
// agent-internals.json), plus the provisioning files compose.yaml mounts
// (provisioning/datasources, provisioning/dashboards).
//
// Regenerate the JSON after changing build.go:
//
//	go test ./dashboards -run TestGenerated -update
//
// Every panel takes its data source from the dashboard's "datasource"
// variable. The tests load every file strictly with the SDK and parse every
// query as PromQL; the end-to-end test (e2e/) runs every query against a
// Prometheus that scraped a real agent. Queries lists them for it.
//
// It is not imported by the agent: cmd → plugins → agent never reaches it.
package dashboards
