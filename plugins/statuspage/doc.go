// Package statuspage is the status_page plugin: the agent's built-in status
// page at / on its HTTP listener, for someone without Grafana.
//
// One server-rendered page (html/template, no scripts, no build step) that
// refreshes itself shows every AI plugin the ExtManager knows (health state,
// kind and version, capabilities, check latency, last error, and a strip of
// its recent states) and the state of every host plugin. It reads the
// "ai_catalog" service (*catalog.Catalog) and the host's
// "plugin_directory"; the history strip comes from samples of the catalog it
// takes itself, a bounded ring per AI plugin, so it needs nothing else.
// Without a running ExtManager it shows the host plugins only.
//
// It is a Business-priority plugin that serves GET /{$} through
// agent.RouteProvider (the host yields the root to it while it runs).
package statuspage
