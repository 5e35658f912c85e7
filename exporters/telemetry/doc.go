// Package telemetry sets up the agent's OpenTelemetry SDK from the standard
// OTEL_* environment variables: a tracer provider whose spans always go to an
// in-process zPages processor served at /debug/tracez, a meter provider and
// a logger provider, each exporting where OTEL_TRACES_EXPORTER,
// OTEL_METRICS_EXPORTER and OTEL_LOGS_EXPORTER say (through the contrib
// autoexport package), with a resource in which the environment
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) wins over the built-in
// service name. It also holds the slog handlers that put trace ids on log
// records and carry records out over OTLP.
package telemetry
