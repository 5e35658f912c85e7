package health

import (
	"context"
	"net/url"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vitals-dev/vitals/probes"
)

// GenAI semantic conventions versions the engine emits. The conventions
// are in development and renamed things between these versions:
// gen_ai.system became gen_ai.provider.name (v1.37.0), and the client
// time-to-first-chunk histogram appeared (v1.41.0, the last OpenTelemetry
// Go semconv package with the GenAI conventions).
const (
	// GenAIDefaultVersion is what the engine emits by default, as the
	// conventions ask of instrumentations that emitted v1.36.0 or older.
	GenAIDefaultVersion = "1.36.0"
	// GenAILatestVersion is what OTEL_SEMCONV_STABILITY_OPT_IN=
	// gen_ai_latest_experimental selects.
	GenAILatestVersion = "1.41.0"
)

// Bucket boundaries the GenAI conventions advise.
var (
	genAIDurationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	genAITokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	genAIChunkBuckets    = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	probeBuckets         = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// otelMetrics records checks as OpenTelemetry metrics: the GenAI client
// metrics for each synthetic inference (a probe is a client call), and the
// engine's own under vitals.*. With a no-op meter provider it costs a
// branch per record.
type otelMetrics struct {
	latest bool

	opDuration metric.Float64Histogram // gen_ai.client.operation.duration
	tokenUsage metric.Int64Histogram   // gen_ai.client.token.usage
	firstChunk metric.Float64Histogram // gen_ai.client.operation.time_to_first_chunk (latest only)

	probeDuration metric.Float64Histogram // vitals.ai.probe.duration
	probeCount    metric.Int64Counter     // vitals.ai.probes
	ttft          metric.Float64Histogram // vitals.ai.time_to_first_token
	transitions   metric.Int64Counter     // vitals.ai.health.transitions

	gauges metric.Registration // the state and up callback; nil if none
	once   sync.Once
}

func newOTelMetrics(mp metric.MeterProvider, latest bool, e *Engine) *otelMetrics {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	version := GenAIDefaultVersion
	if latest {
		version = GenAILatestVersion
	}
	m := mp.Meter("github.com/vitals-dev/vitals/health",
		metric.WithSchemaURL("https://opentelemetry.io/schemas/"+version))
	o := &otelMetrics{latest: latest}
	// Instrument errors only come from invalid names or units, which are
	// constants here; the instruments are then no-ops.
	o.opDuration, _ = m.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration."), metric.WithExplicitBucketBoundaries(genAIDurationBuckets...))
	o.tokenUsage, _ = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Number of input and output tokens used."), metric.WithExplicitBucketBoundaries(genAITokenBuckets...))
	if latest {
		o.firstChunk, _ = m.Float64Histogram("gen_ai.client.operation.time_to_first_chunk", metric.WithUnit("s"),
			metric.WithDescription("Time to receive the first chunk, measured from when the client issues the generation request to when the first chunk is received in the response stream."),
			metric.WithExplicitBucketBoundaries(genAIChunkBuckets...))
	}
	o.probeDuration, _ = m.Float64Histogram("vitals.ai.probe.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of AI plugin probes, retries included."), metric.WithExplicitBucketBoundaries(probeBuckets...))
	o.probeCount, _ = m.Int64Counter("vitals.ai.probes", metric.WithUnit("{probe}"),
		metric.WithDescription("AI plugin probes run, by probe and result."))
	o.ttft, _ = m.Float64Histogram("vitals.ai.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("Time to first token of synthetic inferences."), metric.WithExplicitBucketBoundaries(genAIChunkBuckets...))
	o.transitions, _ = m.Int64Counter("vitals.ai.health.transitions", metric.WithUnit("{transition}"),
		metric.WithDescription("AI plugin health state changes."))
	state, _ := m.Int64ObservableGauge("vitals.ai.health.state", metric.WithUnit("1"),
		metric.WithDescription("The AI plugin's health state: 1 for the current state, 0 for the others."))
	up, _ := m.Int64ObservableGauge("vitals.ai.up", metric.WithUnit("1"),
		metric.WithDescription("Whether the AI plugin passed its last liveness probe (1) or not (0)."))
	o.gauges, _ = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		for _, s := range e.Statuses() {
			plugin := attribute.String("vitals.ai.plugin", s.ID)
			for _, st := range States {
				v := int64(0)
				if st == s.State {
					v = 1
				}
				ob.ObserveInt64(state, v, metric.WithAttributes(plugin, attribute.String("vitals.ai.state", string(st))))
			}
			if s.Last != nil {
				v := int64(1)
				if s.Last.Probe == probes.Liveness {
					v = 0
				}
				ob.ObserveInt64(up, v, metric.WithAttributes(plugin))
			}
		}
		return nil
	}, state, up)
	return o
}

// close unregisters the gauges' callback, so that a stopped engine's
// plugins are no longer reported. It is safe twice.
func (o *otelMetrics) close() {
	o.once.Do(func() {
		if o.gauges != nil {
			_ = o.gauges.Unregister()
		}
	})
}

// observe records a check's probes; ctx carries the check's span, which
// the SDK turns into exemplars.
func (o *otelMetrics) observe(ctx context.Context, plugin string, obs Observation) {
	if !o.probeCount.Enabled(ctx) && !o.probeDuration.Enabled(ctx) {
		return
	}
	for _, p := range obs.Probes {
		result := p.result()
		attrs := []attribute.KeyValue{attribute.String("vitals.ai.plugin", plugin), attribute.String("vitals.ai.probe", p.Probe)}
		if result == "failure" {
			attrs = append(attrs, attribute.String("error.type", string(p.Class)))
		}
		if p.sent() {
			o.probeDuration.Record(ctx, p.Duration.Seconds(), metric.WithAttributes(attrs...))
		}
		o.probeCount.Add(ctx, 1, metric.WithAttributes(append(attrs, attribute.String("vitals.ai.probe.result", result))...))
		if p.Probe == probes.Synthetic && p.OK && p.Result.TimeToFirstToken > 0 {
			o.ttft.Record(ctx, p.Result.TimeToFirstToken.Seconds(), metric.WithAttributes(attribute.String("vitals.ai.plugin", plugin)))
		}
	}
}

// transition counts a change of state.
func (o *otelMetrics) transition(ctx context.Context, t Transition) {
	o.transitions.Add(ctx, 1, metric.WithAttributes(attribute.String("vitals.ai.plugin", t.Plugin),
		attribute.String("vitals.ai.from", string(t.From)), attribute.String("vitals.ai.to", string(t.To))))
}

// genAIAttrs are the attributes of a synthetic inference in the GenAI
// conventions of the engine's version: operation, provider (the kind of
// server, as the client knows it: "openai" for any OpenAI-compatible API),
// server address and port. The requested model is the caller's to add.
func (o *otelMetrics) genAIAttrs(op string, kind probes.Kind, baseURL string) []attribute.KeyValue {
	provider := "gen_ai.system"
	if o.latest {
		provider = "gen_ai.provider.name"
	}
	attrs := []attribute.KeyValue{attribute.String("gen_ai.operation.name", op), attribute.String(provider, string(kind))}
	if u, err := url.Parse(baseURL); err == nil && u.Hostname() != "" {
		attrs = append(attrs, attribute.String("server.address", u.Hostname()))
		if port, err := strconv.Atoi(u.Port()); err == nil {
			attrs = append(attrs, attribute.Int("server.port", port))
		}
	}
	return attrs
}

// synthetic records one synthetic inference as a GenAI client operation.
func (o *otelMetrics) synthetic(ctx context.Context, attrs []attribute.KeyValue, out *ProbeOutcome) {
	if !o.opDuration.Enabled(ctx) {
		return
	}
	r := out.Result
	d := attrs
	if !out.OK {
		d = append(attrs[:len(attrs):len(attrs)], attribute.String("error.type", string(out.Class)))
	}
	o.opDuration.Record(ctx, out.Duration.Seconds(), metric.WithAttributes(d...))
	if r.PromptTokens > 0 {
		o.tokenUsage.Record(ctx, r.PromptTokens, metric.WithAttributes(append(attrs[:len(attrs):len(attrs)], attribute.String("gen_ai.token.type", "input"))...))
	}
	if r.CompletionTokens > 0 {
		o.tokenUsage.Record(ctx, r.CompletionTokens, metric.WithAttributes(append(attrs[:len(attrs):len(attrs)], attribute.String("gen_ai.token.type", "output"))...))
	}
	if o.firstChunk != nil && out.OK && r.TimeToFirstToken > 0 {
		o.firstChunk.Record(ctx, r.TimeToFirstToken.Seconds(), metric.WithAttributes(attrs...))
	}
}
