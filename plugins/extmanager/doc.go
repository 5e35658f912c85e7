// Package extmanager is the ExtManager plugin: it knows every AI plugin the
// agent can see. It discovers them from five live sources (static targets
// in config, drop-in manifests in a watched directory, in-process host
// plugins that implement catalog.AI, external processes that announce
// themselves on the bus, and Prometheus-style service discovery run by a
// discovery.Manager), keeps the part that its shard owns, detects what
// each one is and can do with the engine families of probes/engines,
// keeps them in a catalog.Catalog, runs the health engine
// (package health) over them, and tells everyone what changed: bus events
// on extmanager.*, log lines, counters, the admin API at
// /api/v1/admin/ai-plugins and the vitals_ai_plugin_* metrics.
//
// It is a Business-priority plugin named "extmanager" and provides
// catalog.ServiceName ("ai_catalog"), the *catalog.Catalog that other
// plugins read through package catalog.
package extmanager
