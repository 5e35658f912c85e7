package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/agent/agenttest"
)

// otlpReceiver is a minimal OTLP/HTTP endpoint that keeps span names, the
// names of metrics, and the trace ids of log records by body.
type otlpReceiver struct {
	mu      sync.Mutex
	names   map[string]int
	attrs   map[string]map[string]string // span name -> attribute key -> value (last seen)
	logs    map[string][]byte            // log body -> trace id (last seen)
	metrics map[string]bool
}

func newOTLPReceiver() *otlpReceiver {
	return &otlpReceiver{names: map[string]int{}, attrs: map[string]map[string]string{}, logs: map[string][]byte{}, metrics: map[string]bool{}}
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	switch r.URL.Path {
	case "/v1/traces":
	case "/v1/metrics":
		b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		var req colmetrics.ExportMetricsServiceRequest
		if err != nil || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "not an OTLP metrics export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, mt := range sm.GetMetrics() {
					o.metrics[mt.GetName()] = true
				}
			}
		}
		o.mu.Unlock()
		out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
		return
	case "/v1/logs":
		b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		var req collogs.ExportLogsServiceRequest
		if err != nil || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "not an OTLP logs export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					o.logs[lr.GetBody().GetStringValue()] = lr.GetTraceId()
				}
			}
		}
		o.mu.Unlock()
		return
	default:
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				o.names[s.GetName()]++
				a := map[string]string{}
				for _, kv := range s.GetAttributes() {
					a[kv.GetKey()] = kv.GetValue().String()
				}
				o.attrs[s.GetName()] = a
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (o *otlpReceiver) count(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.names[name]
}

func TestTracesGoOutOverOTLPAndTracez(t *testing.T) {
	recv := newOTLPReceiver()
	srv := httptest.NewServer(recv)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	p := startBinary(t)
	addr := p.ready(t)

	// The page shows a span once it has ended; poll until it has them all.
	var page []byte
	for _, want := range []string{"agent.startup", "plugin.initialize", "plugin.start"} {
		agenttest.Eventually(t, 20*time.Second, "/debug/tracez shows "+want, func() bool {
			if strings.Contains(string(page), want) {
				return true
			}
			resp, err := http.Get("http://" + addr + "/debug/tracez")
			if err != nil {
				t.Fatal(err)
			}
			page, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.Contains(string(page), want)
		})
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
	// Shutdown flushes: everything is there once the process has exited.
	for _, name := range []string{"agent.startup", "plugin.initialize", "plugin.start", "agent.shutdown", "plugin.stop"} {
		if recv.count(name) == 0 {
			t.Errorf("OTLP receiver got no %s span", name)
		}
	}
	recv.mu.Lock()
	attrs := recv.attrs["plugin.start"]
	recv.mu.Unlock()
	for _, k := range []string{"vitals.plugin.name", "vitals.plugin.priority", "vitals.plugin.outcome"} {
		if _, ok := attrs[k]; !ok {
			t.Errorf("plugin.start span lacks %s: %v", k, attrs)
		}
	}
	// The log records went out too, through the slog bridge, the one
	// logged inside the start-up span with its trace id.
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if id, ok := recv.logs["starting plugins"]; !ok || len(id) != 16 {
		t.Errorf("OTLP log record \"starting plugins\": present %v, trace id %x", ok, id)
	}
	if _, ok := recv.logs["vitals starting"]; !ok {
		t.Errorf("no OTLP log record \"vitals starting\"; got %d records", len(recv.logs))
	}
}

func TestConsoleExporterWritesSpansToStdout(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	p := startBinary(t)
	p.ready(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
	names := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(p.stdout.Bytes()))
	for {
		var span struct{ Name string }
		if err := dec.Decode(&span); err != nil {
			if err != io.EOF {
				t.Fatalf("stdout is not a stream of JSON spans: %v", err)
			}
			break
		}
		names[span.Name] = true
	}
	for _, want := range []string{"agent.startup", "plugin.start", "agent.shutdown"} {
		if !names[want] {
			t.Errorf("stdout lacks the %s span; it has %v", want, names)
		}
	}
}

func (o *otlpReceiver) hasMetric(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.metrics[name]
}

// TestHealthMetricsLeaveOverOTLP runs the agent with an OTLP metrics
// exporter and checks that the demo servers' checks reach the receiver as
// GenAI client metrics and vitals.* metrics, in the conventions
// OTEL_SEMCONV_STABILITY_OPT_IN chooses: the client time-to-first-chunk
// histogram exists only in the latest.
func TestHealthMetricsLeaveOverOTLP(t *testing.T) {
	const firstChunk = "gen_ai.client.operation.time_to_first_chunk"
	for _, tt := range []struct {
		name, optIn string
		latest      bool
	}{
		{"default conventions", "", false},
		{"gen_ai_latest_experimental", "http,gen_ai_latest_experimental", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recv := newOTLPReceiver()
			srv := httptest.NewServer(recv)
			defer srv.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			t.Setenv("OTEL_METRICS_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", srv.URL+"/v1/metrics")
			t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
			t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", tt.optIn)

			p := startBinaryReplacing(t, "          interval: 10s\n", "          interval: 200ms\n          start_spread: 0\n")
			p.address(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			want := []string{"gen_ai.client.operation.duration", "gen_ai.client.token.usage", "vitals.ai.probe.duration", "vitals.ai.health.state", "vitals.ai.time_to_first_token"}
			if tt.latest {
				want = append(want, firstChunk)
			}
			for _, name := range want {
				for !recv.hasMetric(name) {
					select {
					case <-ctx.Done():
						t.Fatalf("the OTLP receiver got no %s\n%s", name, p.logText())
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t); code != 0 {
				t.Fatalf("exit %d\n%s", code, p.logText())
			}
			// The synthetic inferences that gave vitals.ai.time_to_first_token
			// would have given the latest conventions' histogram too.
			if !tt.latest && recv.hasMetric(firstChunk) {
				t.Errorf("%s in the default conventions, which do not have it", firstChunk)
			}
		})
	}
}

// TestJSONLogsCarryTraceIDs checks that a record the agent logs inside a
// span (the start-up's "starting plugins") carries its trace and span id,
// and that one outside any span does not.
func TestJSONLogsCarryTraceIDs(t *testing.T) {
	p := startBinary(t)
	p.ready(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.logText())
	}
	hex := func(v any, n int) bool {
		s, _ := v.(string)
		return len(s) == n && strings.Trim(s, "0123456789abcdef") == "" && strings.Trim(s, "0") != ""
	}
	for _, msg := range []string{"starting plugins", "stopping plugins"} {
		recs := p.messages(msg)
		if len(recs) != 1 || !hex(recs[0]["trace_id"], 32) || !hex(recs[0]["span_id"], 16) {
			t.Errorf("%q records %v, want one with trace_id and span_id", msg, recs)
		}
	}
	// Each plugin's state change is logged inside the start-up or
	// shutdown operation, and carries its trace id, so a "plugin failed"
	// line leads to the span of the step that failed.
	starting, stopping := p.messages("starting plugins"), p.messages("stopping plugins")
	for msg, op := range map[string][]map[string]any{"plugin running": starting, "plugin stopped": stopping} {
		recs := p.messages(msg)
		if len(recs) == 0 || len(op) != 1 {
			t.Errorf("%d %q records", len(recs), msg)
			continue
		}
		for _, r := range recs {
			if r["trace_id"] != op[0]["trace_id"] || !hex(r["span_id"], 16) {
				t.Errorf("%q record %v, want the trace id %v of its operation", msg, r, op[0]["trace_id"])
			}
		}
	}
	if recs := p.messages("vitals starting"); len(recs) != 1 || recs[0]["trace_id"] != nil {
		t.Errorf("\"vitals starting\", logged outside any span: %v", recs)
	}
}
