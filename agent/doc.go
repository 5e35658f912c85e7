// Package agent is the Vitals plugin host.
//
// Everything the agent does is a plugin (the message bus, security, the
// AI-plugin manager, exporters). This package defines the contract plugins
// implement (Plugin and the optional HealthChecker, Reloader,
// ServiceProvider, HTTPMiddleware and RouteProvider interfaces), the
// Registry of plugin factories that main fills, the service Container
// plugins share, the lifecycle Manager that starts plugins in dependency
// and priority order, isolates their failures and stops them in reverse,
// the core.yaml Config with its environment overrides and reload, and the
// HTTP front with /metrics, /livez, /readyz and the admin API.
//
// Packages depend downward: cmd → plugins → agent, probes, exporters.
// This package imports none of them.
package agent
