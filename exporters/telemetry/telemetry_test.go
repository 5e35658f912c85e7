package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// otelVars are cleared before each test so that the environment the tests
// run in does not leak into them.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
	"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_METRICS_PRODUCERS",
}

func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func setup(t *testing.T, o Options) *Providers {
	t.Helper()
	if o.ServiceName == "" {
		o.ServiceName = "vitals"
	}
	p, err := Setup(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func TestSetupChoosesExportersFromEnvironment(t *testing.T) {
	const ep = "http://127.0.0.1:1"
	tests := []struct {
		name                  string
		env                   map[string]string
		traces, metrics, logs string
		wantErr               string
	}{
		{"nothing set: zPages only", nil, "", "", "", ""},
		{"endpoint: every signal over http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep}, "otlp/http", "otlp/http", "otlp/http", ""},
		{"traces endpoint alone", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ep + "/v1/traces"}, "otlp/http", "", "", ""},
		{"otlp without endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "otlp/http", "", "", ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp/grpc", "otlp/grpc", "otlp/grpc", ""},
		{"signal protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "otlp/http", "otlp/grpc", "otlp/grpc", ""},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "console"}, "console", "console", "console", ""},
		{"none per signal", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}, "", "otlp/http", "", ""},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, "", "", "", ""},
		{"http/json", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "", "", "", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json: the OpenTelemetry Go SDK has no OTLP http/json exporter"},
		{"http/json for metrics only", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"}, "", "", "", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/json"},
		{"bad protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, "", "", "", `OTEL_EXPORTER_OTLP_PROTOCOL="udp": want http/protobuf or grpc`},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", "", "", `OTEL_TRACES_EXPORTER="zipkin": want otlp, console or none`},
		{"prometheus metrics exporter", map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, "", "", "", "OTEL_METRICS_EXPORTER=prometheus: the agent serves Prometheus metrics at /metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			// Nothing listens on the endpoint: give up the last flush soon.
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "100")
			p, err := Setup(context.Background(), Options{ServiceName: "vitals"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			if p.Traces != tt.traces || p.Metrics != tt.metrics || p.Logs != tt.logs {
				t.Errorf("traces, metrics, logs = %q, %q, %q; want %q, %q, %q", p.Traces, p.Metrics, p.Logs, tt.traces, tt.metrics, tt.logs)
			}
		})
	}
}

// receiver is a loopback OTLP/HTTP endpoint that counts requests by path.
type receiver struct {
	mu    sync.Mutex
	paths map[string]int
	srv   *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{paths: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.paths[req.URL.Path]++
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paths[path]
}

func TestEachSignalReachesOTLPReceiver(t *testing.T) {
	r := newReceiver(t)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": r.srv.URL})
	p := setup(t, Options{})
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "work")
	span.End()
	c, err := p.Meter.Meter("test").Int64Counter("vitals.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	slog.New(p.LogHandler(slog.LevelInfo)).Info("hello")
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/traces", "/v1/metrics", "/v1/logs"} {
		if r.count(path) == 0 {
			t.Errorf("receiver got nothing on %s", path)
		}
	}
}

func TestNoneExportsNothing(t *testing.T) {
	r := newReceiver(t)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": r.srv.URL,
		"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
	p := setup(t, Options{})
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "work")
	span.End()
	c, _ := p.Meter.Meter("test").Int64Counter("vitals.test")
	c.Add(context.Background(), 1)
	if h := p.LogHandler(slog.LevelInfo); h != nil {
		t.Errorf("a log handler with OTEL_LOGS_EXPORTER=none")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.paths) != 0 {
		t.Errorf("receiver got %v with every exporter none", r.paths)
	}
}

// With OTEL_TRACES_EXPORTER=otlp and no endpoint the exporter dials the
// specification's default, localhost:4318. The test does not bind that
// fixed port; it sees the dial in the export error.
func TestOTLPWithoutEndpointDialsDefault(t *testing.T) {
	setEnv(t, map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"})
	p := setup(t, Options{})
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "work")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.Tracer.ForceFlush(ctx)
	if err == nil {
		t.Skip("something accepted OTLP on localhost:4318; cannot tell the default dial apart")
	}
	// The specification's default is plain http://localhost:4318; the Go
	// exporter's own is https, which a local Collector refuses.
	if !strings.Contains(err.Error(), `"http://localhost:4318/v1/traces"`) {
		t.Errorf("export error %q does not name http://localhost:4318/v1/traces", err)
	}
}

// TestOTLPDefaultEndpointIsPlaintext points the default endpoints at a
// loopback listener and reads the first bytes each protocol's exporter
// sends there: an HTTP request or the HTTP/2 preface, never a TLS
// handshake, as a Collector listening on its defaults expects.
func TestOTLPDefaultEndpointIsPlaintext(t *testing.T) {
	if defaultEndpoint["otlp/http"] != "http://localhost:4318" || defaultEndpoint["otlp/grpc"] != "http://localhost:4317" {
		t.Fatalf("default endpoints %v, want the specification's http://localhost:4318 and http://localhost:4317", defaultEndpoint)
	}
	for _, tt := range []struct{ protocol, signal, exporterVar, want string }{
		{"http/protobuf", "traces", "OTEL_TRACES_EXPORTER", "POST /v1/traces "},
		{"http/protobuf", "metrics", "OTEL_METRICS_EXPORTER", "POST /v1/metrics "},
		{"http/protobuf", "logs", "OTEL_LOGS_EXPORTER", "POST /v1/logs "},
		{"grpc", "traces", "OTEL_TRACES_EXPORTER", "PRI * HTTP/2.0"},
		{"grpc", "metrics", "OTEL_METRICS_EXPORTER", "PRI * HTTP/2.0"},
		{"grpc", "logs", "OTEL_LOGS_EXPORTER", "PRI * HTTP/2.0"},
	} {
		t.Run(tt.protocol+" "+tt.signal, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			first := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					first <- err.Error()
					return
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, len(tt.want))
				_, err = io.ReadFull(c, b)
				if err != nil {
					first <- err.Error()
					return
				}
				first <- string(b)
			}()
			proto := "otlp/http"
			if tt.protocol == "grpc" {
				proto = "otlp/grpc"
			}
			saved := defaultEndpoint[proto]
			defaultEndpoint[proto] = "http://" + ln.Addr().String()
			defer func() { defaultEndpoint[proto] = saved }()
			setEnv(t, map[string]string{tt.exporterVar: "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": tt.protocol, "OTEL_EXPORTER_OTLP_TIMEOUT": "1000"})
			p := setup(t, Options{})
			ctx := context.Background()
			switch tt.signal {
			case "traces":
				_, span := p.Tracer.Tracer("test").Start(ctx, "work")
				span.End()
			case "metrics":
				c, _ := p.Meter.Meter("test").Int64Counter("vitals.test")
				c.Add(ctx, 1)
			case "logs":
				slog.New(p.LogHandler(slog.LevelInfo)).Info("hello")
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_ = p.Shutdown(sctx) // flushes to the listener, which never answers: an error
			select {
			case got := <-first:
				if got != tt.want {
					t.Errorf("the exporter's first bytes %q, want %q (plaintext)", got, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("nothing dialled the default endpoint")
			}
		})
	}
}

func TestResourceFromEnvironmentWins(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want map[attribute.Key]string
	}{
		{"built-in default", nil, map[attribute.Key]string{"service.name": "vitals", "service.version": "v1.2.3"}},
		{"OTEL_SERVICE_NAME", map[string]string{"OTEL_SERVICE_NAME": "edge-agent"}, map[attribute.Key]string{"service.name": "edge-agent", "service.version": "v1.2.3"}},
		{"OTEL_RESOURCE_ATTRIBUTES", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=rack7,deployment.environment.name=prod"},
			map[attribute.Key]string{"service.name": "rack7", "deployment.environment.name": "prod"}},
		{"OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES", map[string]string{"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b"},
			map[attribute.Key]string{"service.name": "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			rec := tracetest.NewSpanRecorder()
			p := setup(t, Options{ServiceVersion: "v1.2.3", Processors: []sdktrace.SpanProcessor{rec}})
			_, span := p.Tracer.Tracer("test").Start(context.Background(), "work")
			span.End()
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			for k, want := range tt.want {
				if got, _ := spans[0].Resource().Set().Value(k); got.AsString() != want {
					t.Errorf("span resource %s = %q, want %q", k, got.AsString(), want)
				}
			}
		})
	}
}

func TestLogRecordsInsideSpansCarryTraceIDs(t *testing.T) {
	setEnv(t, nil)
	p := setup(t, Options{})
	var buf bytes.Buffer
	log := slog.New(WithTraceIDs(slog.NewJSONHandler(&buf, nil))).With("plugin", "x")
	ctx, span := p.Tracer.Tracer("test").Start(context.Background(), "work")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")

	dec := json.NewDecoder(&buf)
	var inside, outside map[string]any
	if err := dec.Decode(&inside); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&outside); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if inside["trace_id"] != sc.TraceID().String() || inside["span_id"] != sc.SpanID().String() || inside["plugin"] != "x" {
		t.Errorf("record inside the span = %v, want trace_id %s span_id %s", inside, sc.TraceID(), sc.SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("record outside any span has a trace id: %v", outside)
	}
}

func TestLogHandlerKeepsLevel(t *testing.T) {
	setEnv(t, map[string]string{"OTEL_LOGS_EXPORTER": "console"})
	p := setup(t, Options{})
	h := p.LogHandler(slog.LevelWarn)
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Errorf("the OTLP log handler does not follow the level")
	}
}

func TestTracezShowsSpans(t *testing.T) {
	setEnv(t, nil)
	p := setup(t, Options{})
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "plugin.start")
	span.End()
	rec := httptest.NewRecorder()
	p.Tracez().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/tracez", nil))
	if !strings.Contains(rec.Body.String(), "plugin.start") {
		t.Errorf("tracez page lacks the span")
	}
}

func TestSemconvOptIn(t *testing.T) {
	t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
	if !SemconvOptIn("gen_ai_latest_experimental") || !SemconvOptIn("http") || SemconvOptIn("gen_ai") {
		t.Error("OTEL_SEMCONV_STABILITY_OPT_IN is not read as a list")
	}
	t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "")
	if SemconvOptIn("gen_ai_latest_experimental") {
		t.Error("opted in with the variable empty")
	}
}

// TestDescribeSaysWhyASignalIsNotExported checks the start-up line's words:
// where each signal goes, or the variable that kept it in the process.
func TestDescribeSaysWhyASignalIsNotExported(t *testing.T) {
	const ep = "http://127.0.0.1:1"
	for _, tt := range []struct {
		name                  string
		env                   map[string]string
		traces, metrics, logs string
	}{
		{"nothing set", nil,
			"not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER)",
			"not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_METRICS_EXPORTER)",
			"not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_LOGS_EXPORTER)"},
		{"none for traces", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "none"},
			"not exported (OTEL_TRACES_EXPORTER=none)", "otlp/http", "otlp/http"},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_SDK_DISABLED": "true"},
			"not exported (OTEL_SDK_DISABLED=true)", "not exported (OTEL_SDK_DISABLED=true)", "not exported (OTEL_SDK_DISABLED=true)"},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"},
			"console", "not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_METRICS_EXPORTER)", "not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_LOGS_EXPORTER)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "100")
			p := setup(t, Options{})
			if tr, m, l := p.Describe(); tr != tt.traces || m != tt.metrics || l != tt.logs {
				t.Errorf("Describe() = %q, %q, %q; want %q, %q, %q", tr, m, l, tt.traces, tt.metrics, tt.logs)
			}
		})
	}
}

// TestOneErrorPerBadVariable: a protocol variable every signal reads is
// named once, not once per signal.
func TestOneErrorPerBadVariable(t *testing.T) {
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
	_, err := Setup(context.Background(), Options{ServiceName: "vitals"})
	if err == nil || strings.Count(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL=http/json") != 1 {
		t.Errorf("err = %v, want the variable named once", err)
	}
}
