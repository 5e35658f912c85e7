// Package statuspage is the status_page plugin: the agent's built-in status
// page at / on its HTTP listener, for someone without Grafana.
//
// One server-rendered page (html/template, no scripts, no build step) that
// refreshes itself shows every AI plugin the ExtManager knows (health state,
// kind and version, capabilities, check latency, last error, and a strip of
// its last checks) and the state of every host plugin. It reads the typed
// health of each AI plugin from the "ai_catalog" service (*catalog.Catalog),
// the checks of the strip from the health engine's history
// (health.HistoryService, a *health.History, memory only) and the host
// plugins from "plugin_directory"; it keeps no state of its own. Without a
// running ExtManager it shows the host plugins only; without health checks,
// empty strips.
//
// It is a Business-priority plugin that serves GET /{$} through
// agent.RouteProvider (the host yields the root to it while it runs).
package statuspage
