// Package tracing sets up the agent's OpenTelemetry tracer provider: spans
// always go to an in-process zPages processor served at /debug/tracez, and
// over OTLP when the standard OTEL_EXPORTER_OTLP_* variables ask for it.
package tracing
