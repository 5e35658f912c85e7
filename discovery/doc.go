// Package discovery finds AI servers the way Prometheus finds scrape
// targets, with Prometheus' own code: file_sd_configs, http_sd_configs,
// dns_sd_configs and kubernetes_sd_configs (roles pod, service and
// endpointslice), keyed and shaped as in a Prometheus scrape config, and
// relabel_configs over what they find. Only these mechanisms are linked
// in: the package imports Prometheus' discovery/file, discovery/http,
// discovery/dns and discovery/kubernetes, never discovery/install.
//
// A Manager runs the configured discoverers, relabels each discovered
// label set, and makes a Target of what survives: __address__,
// __scheme__ and __metrics_path__ make the endpoint,
// __vitals_metrics_url__ says where its metrics are when not at the
// endpoint's /metrics, __vitals_kind__, __vitals_model__ and
// __vitals_id__ set the kind, the model and the id, and every other label not starting with "__" becomes a label of the
// target. It keeps the part of the targets that this agent's Shard owns
// (rendezvous hashing of the target id, so N agents with one config
// check each target once) and hands the whole set to a callback whenever
// it changes. A source that fails keeps its last good targets.
//
// On the map (docs/architecture.md) it sits below the plugins: the
// extmanager plugin decodes the Config from its section, runs a Manager
// and turns its Targets into catalog entries.
package discovery
