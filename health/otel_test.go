package health_test

import (
	"compress/gzip"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// metricsReceiver is a loopback OTLP/HTTP metrics endpoint that keeps
// every data point's attributes, by metric name.
type metricsReceiver struct {
	mu        sync.Mutex
	schema    map[string]string              // scope schema URL by metric
	points    map[string][]map[string]string // metric -> data points' attributes
	exemplars map[string][]string            // metric -> exemplar trace ids
}

func (m *metricsReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/metrics" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = io.LimitReader(r.Body, 8<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req colmetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	attrs := func(kvs []*commonpb.KeyValue) map[string]string {
		out := map[string]string{}
		for _, kv := range kvs {
			v := kv.GetValue()
			switch {
			case v.GetStringValue() != "":
				out[kv.GetKey()] = v.GetStringValue()
			default:
				out[kv.GetKey()] = v.String()
			}
		}
		return out
	}
	m.mu.Lock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, mt := range sm.GetMetrics() {
				name := mt.GetName()
				m.schema[name] = sm.GetSchemaUrl()
				var dps []interface {
					GetAttributes() []*commonpb.KeyValue
					GetExemplars() []*metricspb.Exemplar
				}
				for _, dp := range mt.GetHistogram().GetDataPoints() {
					dps = append(dps, dp)
				}
				for _, dp := range mt.GetSum().GetDataPoints() {
					dps = append(dps, dp)
				}
				for _, dp := range mt.GetGauge().GetDataPoints() {
					dps = append(dps, dp)
				}
				for _, dp := range dps {
					m.points[name] = append(m.points[name], attrs(dp.GetAttributes()))
					for _, ex := range dp.GetExemplars() {
						m.exemplars[name] = append(m.exemplars[name], string(ex.GetTraceId()))
					}
				}
			}
		}
	}
	m.mu.Unlock()
	out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// TestGenAIMetricsOverOTLP runs checks of an aisim server with an OTLP
// metrics exporter and checks what an OTLP receiver gets: the GenAI client
// metrics of the synthetic inference in the default and in the latest
// conventions, and the engine's vitals.* metrics with trace exemplars.
func TestGenAIMetricsOverOTLP(t *testing.T) {
	for _, latest := range []bool{false, true} {
		name := "default v" + health.GenAIDefaultVersion
		if latest {
			name = "gen_ai_latest_experimental v" + health.GenAILatestVersion
		}
		t.Run(name, func(t *testing.T) {
			recv := &metricsReceiver{schema: map[string]string{}, points: map[string][]map[string]string{}, exemplars: map[string][]string{}}
			srv := httptest.NewServer(recv)
			defer srv.Close()
			ctx := context.Background()
			exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(srv.URL+"/v1/metrics"))
			if err != nil {
				t.Fatal(err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
			tp := sdktrace.NewTracerProvider()
			defer tp.Shutdown(ctx)

			_, sim := sim(t, probes.KindOpenAI, 1)
			u, _ := url.Parse(sim.URL)
			r := newRig(t, fastConfig(), func(o *health.Options) {
				o.MeterProvider, o.TracerProvider, o.GenAILatest = mp, tp, latest
			})
			r.e.Upsert(target("llm", probes.KindOpenAI, sim.URL))
			r.awaitState("llm", health.StateHealthy)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := mp.ForceFlush(sctx); err != nil { // while the gauges report
				t.Fatal(err)
			}
			if err := r.e.Stop(sctx); err != nil {
				t.Fatal(err)
			}
			if err := mp.Shutdown(sctx); err != nil { // the last collection goes out
				t.Fatal(err)
			}

			recv.mu.Lock()
			defer recv.mu.Unlock()
			provider, other := "gen_ai.system", "gen_ai.provider.name"
			version := health.GenAIDefaultVersion
			if latest {
				provider, other, version = other, provider, health.GenAILatestVersion
			}
			want := map[string]string{"gen_ai.operation.name": "chat", provider: "openai", "gen_ai.request.model": "sim-chat",
				"server.address": u.Hostname(), "server.port": "int_value:" + u.Port()}
			genai := []string{"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
			if latest {
				genai = append(genai, "gen_ai.client.operation.time_to_first_chunk")
			} else if len(recv.points["gen_ai.client.operation.time_to_first_chunk"]) > 0 {
				t.Error("time_to_first_chunk in the default conventions, which do not have it")
			}
			for _, name := range genai {
				pts := recv.points[name]
				if len(pts) == 0 {
					t.Errorf("receiver got no %s; got %v", name, slices.Sorted(maps.Keys(recv.points)))
					continue
				}
				if s := recv.schema[name]; s != "https://opentelemetry.io/schemas/"+version {
					t.Errorf("%s: schema %q, want version %s", name, s, version)
				}
				for _, p := range pts {
					for k, v := range want {
						if p[k] != v {
							t.Errorf("%s: %s = %q, want %q (%v)", name, k, p[k], v, p)
						}
					}
					if _, ok := p[other]; ok {
						t.Errorf("%s carries %s too: %v", name, other, p)
					}
				}
			}
			types := map[string]bool{}
			for _, p := range recv.points["gen_ai.client.token.usage"] {
				types[p["gen_ai.token.type"]] = true
			}
			if !types["input"] || !types["output"] {
				t.Errorf("token usage types %v, want input and output", types)
			}
			for _, name := range []string{"vitals.ai.probe.duration", "vitals.ai.probes", "vitals.ai.time_to_first_token",
				"vitals.ai.health.state", "vitals.ai.up", "vitals.ai.health.transitions"} {
				if len(recv.points[name]) == 0 {
					t.Errorf("receiver got no %s", name)
				}
			}
			if len(recv.exemplars["vitals.ai.probe.duration"]) == 0 || len(recv.exemplars["vitals.ai.probe.duration"][0]) != 16 {
				t.Errorf("vitals.ai.probe.duration exemplars %q, want trace ids", recv.exemplars["vitals.ai.probe.duration"])
			}
		})
	}
}

// TestStoppedEngineLeavesTheGauges checks that the state gauges of a
// stopped engine are no longer reported by the meter provider it was given
// (the agent's, which outlives an engine across re-enables).
func TestStoppedEngineLeavesTheGauges(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	defer mp.Shutdown(context.Background())
	_, sim := sim(t, probes.KindOpenAI, 1)
	r := newRig(t, fastConfig(), func(o *health.Options) { o.MeterProvider = mp })
	r.e.Upsert(target("llm", probes.KindOpenAI, sim.URL))
	r.awaitState("llm", health.StateHealthy)

	gauges := func() int {
		var rm metricdata.ResourceMetrics
		if err := rd.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "vitals.ai.health.state" {
					n += len(g.DataPoints)
				}
			}
		}
		return n
	}
	if n := gauges(); n != len(health.States) {
		t.Fatalf("running engine: %d vitals.ai.health.state points, want %d", n, len(health.States))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gauges(); n != 0 {
		t.Errorf("stopped engine: %d vitals.ai.health.state points, want none", n)
	}
}
