// Command vitals is the Vitals agent: a plugin host that watches AI plugins
// and exports their health as Prometheus metrics, traces and alerts.
//
//	vitals [--config FILE] [--log-format text|json] [--log-level LEVEL]
//	vitals check-config FILE
//	vitals version
//
// With no --config (and no VITALS_CONFIG) it runs a built-in demo config.
// SIGINT and SIGTERM shut it down gracefully (a second one exits at once);
// SIGHUP reloads the config file.
package main
