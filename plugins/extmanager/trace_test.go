package extmanager_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestServerRequestsCarryTraceContext runs the ExtManager with the host's
// tracer provider against a server that records request headers: every
// request, of capability detection and of the health checks, carries a
// W3C traceparent whose parent is a CLIENT span under an ai.detect or
// ai.health.check trace.
func TestServerRequestsCarryTraceContext(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var parents []string // span ids from traceparent, "" when missing
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.Header.Get("traceparent"), "-")
		mu.Lock()
		if len(parts) == 4 {
			parents = append(parents, parts[2])
		} else {
			parents = append(parents, "")
		}
		mu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { sim.Close(); srv.Close() })

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	r := startWith(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\nhealth: {interval: 20ms, start_spread: 0, jitter: 0}\ntargets: [{id: llm, endpoint: %q}]\n", srv.URL),
		map[string]any{tracerProvider: trace.TracerProvider(tp)})
	r.awaitDetected("llm")
	agenttest.Eventually(t, 15*time.Second, "a health check ran", func() bool {
		s, ok := r.e.Engine().Status("llm")
		return ok && s.Checks > 0
	})
	if err := r.stop(context.Background()); err != nil { // every span has ended
		t.Fatal(err)
	}

	spans := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.SpanContext().SpanID()] = s
	}
	root := func(s sdktrace.ReadOnlySpan) string {
		for {
			p, ok := spans[s.Parent().SpanID()]
			if !ok {
				return s.Name()
			}
			s = p
		}
	}
	mu.Lock()
	defer mu.Unlock()
	roots := map[string]int{}
	for i, id := range parents {
		if id == "" {
			t.Errorf("request %d carries no traceparent", i)
			continue
		}
		sid, _ := trace.SpanIDFromHex(id)
		client, ok := spans[sid]
		if !ok || client.SpanKind() != trace.SpanKindClient {
			t.Errorf("request %d: parent span %s is not a recorded CLIENT span", i, id)
			continue
		}
		roots[root(client)]++
	}
	if roots["ai.detect"] == 0 || roots["ai.health.check"] == 0 {
		t.Errorf("requests by root span %v, want some under ai.detect and ai.health.check", roots)
	}
}
