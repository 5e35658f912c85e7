package routing

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/bus/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type permProvider struct{ b *bustest.Bus }

func (p permProvider) ClientFor(plugin string, _ ...bus.Permissions) (bus.Bus, error) {
	return p.b.Client(plugin, bus.Permissions{Publish: []string{plugin + ".", "health.request.", "gpu_probe."}, Subscribe: []string{plugin + "."}}), nil
}

type env struct {
	p   *Plugin
	h   *agent.PluginHost
	r   bus.Requester
	bus *bustest.Bus
}

func start(t *testing.T, y string) *env {
	t.Helper()
	s, err := agent.NewSection(y)
	must(t, err)
	pl, err := Factory(s)
	must(t, err)
	e := &env{p: pl.(*Plugin), bus: bustest.New()}
	c := agenttest.NewContainer(t)
	must(t, c.Provide(bus.ServiceName, bus.Provider(permProvider{e.bus})))
	e.h = agenttest.NewHost(t, Name, agent.HostOptions{Container: c})
	ctx := context.Background()
	must(t, e.p.Initialize(ctx, e.h))
	must(t, e.p.Start(ctx))
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), e.h, e.p) })
	e.r, err = agent.Require[bus.Requester](ctx, c, bus.RoutingService)
	must(t, err)
	return e
}

// responder answers requests on prefix; hold, if set, delays each answer
// until a value arrives on it.
func (e *env) responder(t *testing.T, prefix string, hold <-chan struct{}) {
	t.Helper()
	cl := e.bus.Client("gpu_probe", bus.AllowAll)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := cl.Subscribe(ctx, prefix)
	must(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for req := range ch {
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done():
					return
				}
			}
			_ = bus.Reply(context.Background(), cl, req, bus.Message{Payload: append([]byte("re: "), req.Payload...)})
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func (e *env) counter(outcome string) float64 {
	return testutil.ToFloat64(e.p.m.requests.WithLabelValues(outcome))
}

func TestRequestReply(t *testing.T) {
	e := start(t, "routes:\n  rpc_probe: {topic: gpu_probe.rpc, timeout: 3s}\n")
	e.responder(t, "health.request.gpu_probe", nil)
	e.responder(t, "gpu_probe.rpc", nil)
	for _, tc := range []struct{ dest, want string }{
		{"gpu_probe", "re: ping"},
		{"rpc_probe", "re: ping"},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			resp, err := e.r.Request(context.Background(), tc.dest, bus.Message{Payload: []byte("ping")})
			must(t, err)
			if string(resp.Payload) != tc.want || resp.CorrelationID == "" {
				t.Fatalf("reply %+v", resp)
			}
		})
	}
	var topics []string
	for _, m := range e.bus.Published() {
		if !strings.HasPrefix(m.Topic, "reply.") {
			topics = append(topics, m.Topic)
			if !strings.HasPrefix(m.ReplyTo, "reply.routing.") || m.ID == "" {
				t.Errorf("request %+v lacks id or private reply-to", m)
			}
		}
	}
	if strings.Join(topics, ",") != "health.request.gpu_probe,gpu_probe.rpc" {
		t.Fatalf("requests went to %v", topics)
	}
	if e.counter("ok") != 2 || e.p.router.Pending() != 0 {
		t.Fatalf("ok=%v pending=%d", e.counter("ok"), e.p.router.Pending())
	}
}

func TestTimeoutAndLateReply(t *testing.T) {
	e := start(t, "default_timeout: 50ms\n")
	hold := make(chan struct{})
	e.responder(t, "health.request.slow", hold)
	_, err := e.r.Request(context.Background(), "slow", bus.Message{Payload: []byte("x")})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if e.counter("timeout") != 1 || e.p.router.Pending() != 0 {
		t.Fatalf("timeout=%v pending=%d", e.counter("timeout"), e.p.router.Pending())
	}
	hold <- struct{}{} // the reply comes now, too late
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return testutil.ToFloat64(e.p.m.late) == 1 }) {
		t.Fatal("late reply not counted")
	}
	// A reply nobody asked for is counted apart.
	cl := e.bus.Client("gpu_probe", bus.AllowAll)
	must(t, cl.Publish(context.Background(), "reply.routing.nobody", bus.Message{CorrelationID: "nobody"}))
	if !agenttest.Within(time.Until(deadline), func() bool { return testutil.ToFloat64(e.p.m.unmatched) == 1 }) {
		t.Fatal("unmatched reply not counted")
	}
}

func TestRequestErrors(t *testing.T) {
	e := start(t, "max_pending: 1\ndefault_timeout: 10s\n")
	hold := make(chan struct{})
	e.responder(t, "health.request.held", hold)

	// One request occupies the only slot.
	first := make(chan error, 1)
	go func() {
		_, err := e.r.Request(context.Background(), "held", bus.Message{})
		first <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return e.p.router.Pending() == 1 }) {
		t.Fatal("first request not pending")
	}
	if _, err := e.r.Request(context.Background(), "held", bus.Message{}); !errors.Is(err, ErrTooBusy) {
		t.Fatalf("second request: %v, want ErrTooBusy", err)
	}
	for _, tc := range []struct {
		dest string
		want error
	}{
		{"", ErrDestination},
		{"a.b", ErrDestination},
		{"Bad Name", ErrDestination},
	} {
		if _, err := e.r.Request(context.Background(), tc.dest, bus.Message{}); !errors.Is(err, tc.want) {
			t.Fatalf("dest %q: %v", tc.dest, err)
		}
	}
	hold <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first request: %v", err)
	}

	// Cancellation is the caller's, not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		agenttest.Within(10*time.Second, func() bool { return e.p.router.Pending() == 1 })
		cancel()
	}()
	if _, err := e.r.Request(ctx, "held", bus.Message{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if e.counter("cancelled") != 1 {
		t.Fatalf("cancelled = %v", e.counter("cancelled"))
	}

	// Stop fails what is pending.
	res := make(chan error, 1)
	go func() {
		_, err := e.r.Request(context.Background(), "held", bus.Message{})
		res <- err
	}()
	if !agenttest.Within(time.Until(deadline), func() bool { return e.p.router.Pending() == 1 }) {
		t.Fatal("request not pending before stop")
	}
	must(t, agenttest.Stop(context.Background(), e.h, e.p))
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending at stop: %v", err)
	}
}

func TestReloadRoutes(t *testing.T) {
	e := start(t, "")
	topic, _, err := e.p.router.Resolve("gpu_probe")
	must(t, err)
	if topic != "health.request.gpu_probe" {
		t.Fatal(topic)
	}
	s, _ := agent.NewSection("routes:\n  gpu_probe: {topic: gpu_probe.rpc, timeout: 1s}\n")
	must(t, e.p.Reload(context.Background(), s))
	topic, timeout, err := e.p.router.Resolve("gpu_probe")
	must(t, err)
	if topic != "gpu_probe.rpc" || timeout != time.Second {
		t.Fatalf("after reload: %s %s", topic, timeout)
	}
}

func TestInvalidConfigs(t *testing.T) {
	agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-topic.yaml":         `routes.x.topic: "not a topic" is not a valid topic`,
		"invalid-reply-route.yaml":   "routes.x.topic: requests cannot go to reply topics",
		"invalid-default-topic.yaml": "default_topic",
		"invalid-timeout.yaml":       "default_timeout: must be above 0",
	})
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		p, err := Factory(agent.Section{})
		must(t, err)
		return p
	}, func(t *testing.T, c *agent.Container) {
		must(t, c.Provide(bus.ServiceName, bus.Provider(bustest.New())))
	})
}
