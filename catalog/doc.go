// Package catalog is the model of the AI plugins the agent knows and the
// catalog that holds them: AIPlugin (what one plugin is, can do and how
// healthy it was last seen), Spec (what a discovery source says of it), the
// sources, presence and detection states, the id rule (ValidID, the one
// definition every package checks ids with), and Catalog, a concurrent map
// of plugins that turns every change into an ordered Event for its
// subscribers.
//
// It also holds what in-process AI plugins implement (AI, Endpointer) and
// the name of the service that carries the catalog (ServiceName,
// "ai_catalog"): the ExtManager plugin fills the catalog and provides it;
// the status page, the admin API and anyone else read it through this
// package, never through the ExtManager's.
//
// A plugin's health is the health engine's typed health.Status, as the
// engine last set it (SetHealth); readers take its state, reason, error
// class and last check from the fields, never from strings.
//
// It depends on agent, health and probes (docs/architecture.md).
package catalog
