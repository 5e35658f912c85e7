package messagebus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/e2e/e2etest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/bus"
)

// freeAddr returns a tcp:// endpoint on a loopback port that was free.
func freeAddr(t testing.TB) string {
	return "tcp://" + e2etest.Addr(t)
}

// ipcAddrs returns two ipc:// endpoints in a temp dir.
func ipcAddrs(t testing.TB) (string, string) {
	dir := t.TempDir()
	return "ipc://" + filepath.Join(dir, "pub.sock"), "ipc://" + filepath.Join(dir, "sub.sock")
}

type env struct {
	broker *Broker
	c      *agent.Container // the host's view, for adding services
	gone   sync.Map         // service names the broker's lookups no longer find
	reg    *prometheus.Registry
	events *agent.Events
	logs   *agenttest.LogBuffer
	cfg    Config
}

type envOpt func(*Config, *envExtra)

type envExtra struct {
	tp trace.TracerProvider
}

// hidingHost is a Host whose lookups do not find the services in gone,
// as when their plugin stopped.
type hidingHost struct {
	agent.Host
	gone *sync.Map
}

func (h hidingHost) Get(ctx context.Context, name string) (any, error) {
	if _, ok := h.gone.Load(name); ok {
		return nil, fmt.Errorf("service %q: %w", name, agent.ErrServiceNotFound)
	}
	return h.Host.Get(ctx, name)
}

// startBroker runs a Broker through Initialize and Start with host
// services, and stops it at cleanup.
func startBroker(t testing.TB, yamlText string, opts ...envOpt) *env {
	t.Helper()
	s, err := agent.NewSection(yamlText)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory(s)
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	b := p.(*Broker)
	var extra envExtra
	for _, o := range opts {
		o(&b.cfg, &extra)
	}
	e := &env{broker: b, reg: prometheus.NewRegistry(), events: agent.NewEvents(), logs: &agenttest.LogBuffer{}, cfg: b.cfg}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := agenttest.NewContainer(t)
	e.c = c
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: c, Logger: log, Metrics: e.reg, Events: e.events, TracerProvider: extra.tp})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, b.Initialize(ctx, hidingHost{Host: h, gone: &e.gone}))
	if err := b.Start(ctx); err != nil {
		_ = agenttest.Stop(ctx, h, b)
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := agenttest.Stop(ctx, h, b); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return e
}

func addrsYAML(pub, sub string, extra ...string) string {
	y := fmt.Sprintf("publish_address: %s\nsubscribe_address: %s\n", pub, sub)
	for _, x := range extra {
		y += x + "\n"
	}
	return y
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// client dials the env's broker as an unrestricted client.
func (e *env) client(t testing.TB, o bus.Options) *bus.Client {
	t.Helper()
	if o.PublishEndpoint == "" {
		o.PublishEndpoint = e.cfg.PublishAddress
	}
	if o.SubscribeEndpoint == "" {
		o.SubscribeEndpoint = e.cfg.SubscribeAddress
	}
	c := bus.Dial(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// agentClient returns a view on the agent's own in-process client, as the
// agent's plugins get it, with perms.
func (e *env) agentClient(t testing.TB, name string, perms bus.Permissions) *bus.View {
	t.Helper()
	v := e.broker.svc.client().Scope(name, perms, nil)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func (e *env) counter(name string, labels ...string) float64 {
	m := e.broker.Metrics()
	switch name {
	case "malformed":
		return testutil.ToFloat64(m.Malformed.WithLabelValues(labels...))
	case "dropped":
		return testutil.ToFloat64(m.Dropped.WithLabelValues(labels...))
	case "denied":
		return testutil.ToFloat64(m.Denied.WithLabelValues(labels...))
	case "authfail":
		return testutil.ToFloat64(m.AuthFail)
	case "messages":
		return testutil.ToFloat64(m.Messages.WithLabelValues(labels...))
	case "disconnects":
		return testutil.ToFloat64(m.Disconnects.WithLabelValues(labels...))
	case "throttled":
		return testutil.ToFloat64(m.Throttled.WithLabelValues(labels...))
	case "refused":
		return testutil.ToFloat64(m.Refused.WithLabelValues(labels...))
	case "reconnects":
		return testutil.ToFloat64(m.Reconnect.WithLabelValues(labels...))
	}
	panic("unknown counter " + name)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	if !agenttest.Within(time.Until(deadline), cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// recv waits for one message on ch.
func recv(t testing.TB, ch <-chan bus.Message, d time.Duration) bus.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(d):
		t.Fatalf("no message within %s", d)
	}
	return bus.Message{}
}
