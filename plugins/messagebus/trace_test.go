package messagebus

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/bus"
)

const traceChildEnv = "VITALS_BUS_TRACE_CHILD"

// childSpan is what the subscriber process reports about its consumer span.
type childSpan struct {
	TraceID, SpanID, ParentSpanID, LinkSpanID string
	Kind                                      string
	Attrs                                     map[string]string
	PID                                       int
}

// traceChild runs in a second process: it subscribes to trace.* on the
// broker named in the environment, prints "ready", receives one message and
// prints its recorded CONSUMER span as JSON.
func traceChild() int {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := bus.Dial(bus.Options{
		PublishEndpoint:   os.Getenv(traceChildEnv + "_PUB"),
		SubscribeEndpoint: os.Getenv(traceChildEnv + "_SUB"),
		Name:              "child",
		TracerProvider:    tp,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := c.Subscribe(ctx, "trace.")
	if err == nil {
		err = c.Sync(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	var m bus.Message
	select {
	case m = <-ch:
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "no message")
		return 3
	}
	for _, s := range rec.Ended() {
		if s.SpanContext().SpanID() != m.SpanContext.SpanID() {
			continue
		}
		out := childSpan{
			TraceID:      s.SpanContext().TraceID().String(),
			SpanID:       s.SpanContext().SpanID().String(),
			ParentSpanID: s.Parent().SpanID().String(),
			Kind:         s.SpanKind().String(),
			Attrs:        map[string]string{},
			PID:          os.Getpid(),
		}
		if l := s.Links(); len(l) > 0 {
			out.LinkSpanID = l[0].SpanContext.SpanID().String()
		}
		for _, a := range s.Attributes() {
			out.Attrs[string(a.Key)] = a.Value.Emit()
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return 0
	}
	fmt.Fprintln(os.Stderr, "consumer span not recorded")
	return 4
}

func TestTraceCrossesTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 30*time.Second)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		traceChildEnv+"=1",
		traceChildEnv+"_PUB="+e.cfg.PublishAddress,
		traceChildEnv+"_SUB="+e.cfg.SubscribeAddress)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() { _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child did not get ready: %q", lines.Text())
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	pub := e.client(t, bus.Options{Name: "parent", TracerProvider: tp})
	pctx, root := tp.Tracer("test").Start(ctx, "health round")
	must(t, pub.Publish(pctx, "trace.demo", bus.Message{Payload: []byte("hello")}))
	root.End()

	if !lines.Scan() {
		t.Fatalf("child printed nothing: %v", lines.Err())
	}
	var got childSpan
	must(t, json.Unmarshal(lines.Bytes(), &got))
	if got.PID == os.Getpid() {
		t.Fatal("consumer ran in this process")
	}

	var producer sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			producer = s
		}
	}
	if producer == nil {
		t.Fatal("no producer span recorded")
	}
	pattrs := map[attribute.Key]string{}
	for _, a := range producer.Attributes() {
		pattrs[a.Key] = a.Value.Emit()
	}
	checks := []struct{ name, got, want string }{
		{"same trace", got.TraceID, root.SpanContext().TraceID().String()},
		{"consumer parent is producer", got.ParentSpanID, producer.SpanContext().SpanID().String()},
		{"consumer links producer", got.LinkSpanID, producer.SpanContext().SpanID().String()},
		{"producer parent is root", producer.Parent().SpanID().String(), root.SpanContext().SpanID().String()},
		{"consumer kind", got.Kind, "consumer"},
		{"consumer system", got.Attrs["messaging.system"], "zeromq"},
		{"consumer destination", got.Attrs["messaging.destination.name"], "trace.demo"},
		{"consumer operation", got.Attrs["messaging.operation.name"], "receive"},
		{"consumer body size", got.Attrs["messaging.message.body.size"], "5"},
		{"producer system", pattrs["messaging.system"], "zeromq"},
		{"producer operation", pattrs["messaging.operation.name"], "publish"},
		{"producer destination", pattrs["messaging.destination.name"], "trace.demo"},
		{"message id", got.Attrs["messaging.message.id"], pattrs["messaging.message.id"]},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want || c.want == "" {
				t.Errorf("got %q, want %q", c.got, c.want)
			}
		})
	}
	must(t, tp.Shutdown(ctx))
}

// TestReplySpanNamesAreLowCardinality checks that the spans of a request's
// private reply topic are named by its template, not by its unique topic.
func TestReplySpanNamesAreLowCardinality(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 10*time.Second)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	responder := e.client(t, bus.Options{Name: "gpu", TracerProvider: tp})
	reqs, err := responder.Subscribe(ctx, "jobs.request.gpu")
	must(t, err)
	must(t, responder.Sync(ctx))
	go func() {
		for req := range reqs {
			_ = bus.Reply(ctx, responder, req, bus.Message{Payload: []byte("ok")})
		}
	}()
	requester := e.client(t, bus.Options{Name: "ext_manager", TracerProvider: tp})
	for range 2 {
		_, err := requester.Request(ctx, "jobs.request.gpu", bus.Message{Payload: []byte("?")})
		must(t, err)
	}
	must(t, tp.ForceFlush(ctx))

	names := map[string]int{}
	for _, s := range rec.Ended() {
		names[s.Name()]++
		attrs := map[attribute.Key]attribute.Value{}
		for _, a := range s.Attributes() {
			attrs[a.Key] = a.Value
		}
		dest := attrs["messaging.destination.name"].AsString()
		if !strings.HasPrefix(dest, bus.ReplyPrefix) {
			continue
		}
		tmpl := attrs["messaging.destination.template"].AsString()
		_, named, _ := strings.Cut(s.Name(), " ")
		if !strings.HasSuffix(tmpl, ".{id}") || named != tmpl || !attrs["messaging.destination.temporary"].AsBool() {
			t.Errorf("span %q on %s: template %q, temporary %v", s.Name(), dest, tmpl, attrs["messaging.destination.temporary"].AsBool())
		}
	}
	if names["publish reply.ext_manager.req.{id}"] < 2 || names["publish jobs.request.gpu"] < 2 {
		t.Errorf("spans by name: %v", names)
	}
}
