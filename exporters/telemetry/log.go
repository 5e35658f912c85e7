package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/trace"
)

// LogScope is the instrumentation scope of the agent's log records over
// OTLP.
const LogScope = "github.com/vitals-dev/vitals"

// WithTraceIDs returns a handler that adds trace_id and span_id to every
// record logged with a context that carries a valid span (slog's
// *Context methods and Log), then passes it to next.
func WithTraceIDs(next slog.Handler) slog.Handler { return traceHandler{next} }

type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}

// LogHandler returns the slog bridge that sends records at level or above
// to the logger provider (OTLP or console, as OTEL_LOGS_EXPORTER says),
// with the trace and span ids of the record's context; nil when no logs
// exporter is configured.
func (p *Providers) LogHandler(level slog.Leveler) slog.Handler {
	if p.Logs == "" {
		return nil
	}
	return levelHandler{otelslog.NewHandler(LogScope, otelslog.WithLoggerProvider(p.Logger)), level}
}

// levelHandler holds back records below a level.
type levelHandler struct {
	next  slog.Handler
	level slog.Leveler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.next.Enabled(ctx, l)
}

func (h levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.next.Handle(ctx, r) }

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.next.WithAttrs(as), h.level}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.next.WithGroup(name), h.level}
}
