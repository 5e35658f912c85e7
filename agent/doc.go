// Package agent is the Vitals plugin host.
//
// Everything the agent does is a plugin (the message bus, security, the
// AI-plugin manager, exporters). This package owns:
//
//   - the contract plugins implement: Plugin and the optional
//     HealthChecker, Reloader, PeerChecker, ReadinessChecker,
//     ServiceProvider, HTTPMiddleware and RouteProvider interfaces, and
//     Base (plugin.go);
//   - the Host each plugin gets in Initialize: its logger, config
//     section, scoped services, metrics registerer, tracer, lifecycle
//     events and a goroutine group the host ends after Stop (host.go),
//     over the host's service Container (container.go) and per-plugin
//     metrics views (pluginmetrics.go);
//   - the Registry of plugin factories that main fills (registry.go) and
//     the start order they run in (order.go);
//   - the lifecycle Manager: starting and stopping (lifecycle.go), running
//     and bounding each step, late and abandoned steps (step.go), applying
//     a changed config (reconcile.go), and status and readiness
//     (status.go), with the lifecycle events hub (events.go) and host
//     metrics (metrics.go);
//   - the core.yaml Config (config.go) with its bounded YAML reading
//     (yamlfile.go), strict decoding (decode.go), environment overrides
//     (configenv.go), errors that name file, line and key
//     (configerror.go, keyerror.go), and each plugin's Section
//     (section.go) with its one secret reader (secret.go) and one path
//     resolver (sectionfiles.go);
//   - the Agent that runs it all (agent.go) and its HTTP front: /metrics,
//     /livez, /readyz and the admin API (server.go, front.go, query.go,
//     probe.go), bounded connections (connlimit.go, connvet.go, gate.go,
//     httpconfig.go) and the Alertmanager push (alerting.go).
//
// Packages depend downward: cmd → plugins → agent, probes, exporters.
// This package imports none of cmd or plugins.
package agent
