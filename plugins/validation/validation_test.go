package validation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, y string) (*Plugin, *agent.Container) {
	t.Helper()
	s, err := agent.NewSection(y)
	must(t, err)
	pl, err := Factory(s)
	must(t, err)
	p := pl.(*Plugin)
	c := agenttest.NewContainer(t)
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: c})
	ctx := context.Background()
	must(t, p.Initialize(ctx, h))
	must(t, p.Start(ctx))
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), h, p) })
	return p, c
}

func TestHTTPValidation(t *testing.T) {
	p, _ := start(t, "http: {max_body_bytes: 64, max_json_depth: 3, max_query_bytes: 64}\n")
	var gotBody string
	srv := httptest.NewServer(p.WrapHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	for _, tc := range []struct {
		name, method, path, ctype, body string
		code                            int
		want                            string
	}{
		{"plain GET", "GET", "/api/v1/admin/plugins", "", "", 200, "ok"},
		{"POST without body", "POST", "/api/v1/admin/plugins/validation/enable", "", "", 200, "ok"},
		{"POST with JSON", "POST", "/api/v1/admin/reload", "application/json; charset=utf-8", `{"reason":"x"}`, 200, "ok"},
		{"method not allowed", "DELETE", "/api/v1/admin/plugins/validation", "", "", 405, "method DELETE is not allowed"},
		{"bad plugin name", "GET", "/api/v1/admin/plugins/Not-A-Name", "", "", 400, `plugin name "Not-A-Name" is invalid`},
		{"dot-dot segment", "GET", "/api/v1/admin/plugins/..%2f..", "", "", 400, "path segment"},
		{"bad AI plugin id", "GET", "/api/v1/admin/ai-plugins/a%20b", "", "", 400, "path segment"},
		{"AI plugin id", "GET", "/api/v1/admin/ai-plugins/llm-1.v2_q4/history", "", "", 200, "ok"},
		// The catalog's own rule: an id the catalog would refuse never
		// reaches the admin API.
		{"AI plugin id the catalog refuses", "GET", "/api/v1/admin/ai-plugins/Big:Model", "", "", 400, `AI plugin invalid id "Big:Model"`},
		{"long query", "GET", "/api/v1/admin/logs?source=" + strings.Repeat("a", 100), "", "", 400, "query string is"},
		{"wrong content type", "POST", "/api/v1/admin/reload", "text/plain", "hello", 415, `content type "text/plain" is not accepted`},
		{"missing content type", "POST", "/api/v1/admin/reload", "", `{}`, 415, "is not accepted"},
		{"oversized", "POST", "/api/v1/admin/reload", "application/json", `{"a":"` + strings.Repeat("x", 100) + `"}`, 413, "at most 64 allowed"},
		{"malformed JSON", "POST", "/api/v1/admin/reload", "application/json", `{"a":`, 400, "not valid JSON"},
		{"syntax error", "POST", "/api/v1/admin/reload", "application/json", `{"a" 1}`, 400, "not valid JSON at byte"},
		{"array, not object", "POST", "/api/v1/admin/reload", "application/json", `[1,2]`, 400, "must be a JSON object"},
		{"trailing data", "POST", "/api/v1/admin/reload", "application/json", `{}{}`, 400, "data after the JSON object"},
		{"too deep", "POST", "/api/v1/admin/reload", "application/json", `{"a":{"b":{"c":{}}}}`, 400, "deeper than 3"},
		{"non-API path not checked", "GET", "/metrics", "", "", 200, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotBody = ""
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, body)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct{ Error string }
			if json.Unmarshal(b, &e) == nil && e.Error != "" {
				b = []byte(e.Error)
			}
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, b, tc.code, tc.want)
			}
			if tc.code == 200 && gotBody != tc.body {
				t.Fatalf("handler saw body %q, want %q", gotBody, tc.body)
			}
			if tc.code == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	if got := testutil.ToFloat64(p.rejected.WithLabelValues("http", "json")); got != 5 {
		t.Fatalf("json rejections = %v, want 5", got)
	}
}

func TestChunkedOversizedBody(t *testing.T) {
	p, _ := start(t, "http: {max_body_bytes: 16}\n")
	srv := httptest.NewServer(p.WrapHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"a":"` + strings.Repeat("x", 1000) + `"}`))
		_ = pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/admin/reload", pr) // unknown length: chunked
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
}

func TestBusValidation(t *testing.T) {
	p, c := start(t, "bus: {max_payload_bytes: 128}\n")
	now := time.Unix(2_000_000, 0)
	p.now = func() time.Time { return now }
	f, err := agent.Require[bus.Filter](context.Background(), c, bus.ValidatorService)
	must(t, err)
	ok := func(topic string, pm bus.Message) bus.Message {
		pm.Topic, pm.ID, pm.Source, pm.Time = topic, "id-1", "gpu_probe", now
		return pm
	}
	ann, _ := bus.NewProto(&busv1.Announce{Name: "gpu_probe"})
	hb, _ := bus.NewProto(&busv1.Heartbeat{Name: "gpu_probe"})
	rec, _ := bus.NewProto(&busv1.LogRecord{Message: "hi"})
	for _, tc := range []struct {
		name   string
		m      bus.Message
		reason string // "" = valid
	}{
		{"announce", ok("plugin.announce", ann), ""},
		{"log record", ok("logs.info.gpu_probe", rec), ""},
		{"json log", ok("logs.info.gpu_probe", bus.Message{ContentType: "application/json", Payload: []byte(`{"msg":"x"}`)}), ""},
		{"text log", ok("logs.info.gpu_probe", bus.Message{ContentType: "text/plain", Payload: []byte("x")}), ""},
		{"own namespace, any payload", ok("gpu_probe.stats", bus.Message{Payload: []byte{0xff}}), ""},
		{"bad topic", ok("Logs..x", rec), "topic"},
		{"missing id", func() bus.Message { m := ok("logs.info.x", rec); m.ID = ""; return m }(), "envelope"},
		{"bad source", func() bus.Message { m := ok("logs.info.x", rec); m.Source = "a b"; return m }(), "envelope"},
		{"missing time", func() bus.Message { m := ok("logs.info.x", rec); m.Time = time.Time{}; return m }(), "envelope"},
		{"future time", func() bus.Message { m := ok("logs.info.x", rec); m.Time = now.Add(time.Hour); return m }(), "envelope"},
		{"reply-to outside reply.", func() bus.Message { m := ok("health.request.x", rec); m.ReplyTo = "logs.x"; return m }(), "envelope"},
		{"oversized", ok("gpu_probe.blob", bus.Message{Payload: make([]byte, 200)}), "size"},
		{"announce with heartbeat type", ok("plugin.announce", hb), "payload"},
		{"announce not decoding", ok("plugin.announce", bus.Message{ContentType: ann.ContentType, Payload: []byte{0xff, 0xff}}), "payload"},
		{"json log not an object", ok("logs.info.x", bus.Message{ContentType: "application/json", Payload: []byte(`[1`)}), "payload"},
		{"text log not utf-8", ok("logs.info.x", bus.Message{ContentType: "text/plain", Payload: []byte{0xff, 0xfe}}), "payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.FilterMessage(tc.m)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("valid message rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid (%s)", err, tc.reason)
			}
			if testutil.ToFloat64(p.rejected.WithLabelValues("bus", tc.reason)) == 0 {
				t.Fatalf("reason %s not counted", tc.reason)
			}
		})
	}
}

func TestInvalidConfigs(t *testing.T) {
	agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-method.yaml": `http.methods: entry 1: "FETCH"`,
		"invalid-body.yaml":   "http.max_body_bytes: must be between 0",
		"invalid-depth.yaml":  "http.max_json_depth: must be between 1 and 1000",
		"invalid-skew.yaml":   "bus.max_clock_skew: must be positive",
	})
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		p, err := Factory(agent.Section{})
		must(t, err)
		return p
	}, nil)
}
