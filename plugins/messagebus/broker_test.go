package messagebus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPubSubPrefixFiltering(t *testing.T) {
	pubTCP, subTCP := freeAddr(t), freeAddr(t)
	pubIPC, subIPC := ipcAddrs(t)
	for _, tr := range []struct{ name, pub, sub string }{{"tcp", pubTCP, subTCP}, {"ipc", pubIPC, subIPC}} {
		t.Run(tr.name, func(t *testing.T) {
			e := startBroker(t, addrsYAML(tr.pub, tr.sub))
			cases := []struct {
				name   string
				prefix string
				want   []string
			}{
				{"family", "logs.", []string{"logs.info.a", "logs.error.b"}},
				{"exact", "plugin.announce", []string{"plugin.announce"}},
				{"level", "logs.error.", []string{"logs.error.b"}},
				{"nothing", "zz.", nil},
			}
			ctx := ctxT(t, 10*time.Second)
			pub := e.client(t, bus.Options{Name: "pubber"})
			sub := e.client(t, bus.Options{Name: "subber"})
			chans := map[string]<-chan bus.Message{}
			for _, tc := range cases {
				ch, err := sub.Subscribe(ctx, tc.prefix)
				must(t, err)
				chans[tc.name] = ch
			}
			must(t, sub.Sync(ctx))
			for _, topic := range []string{"logs.info.a", "plugin.announce", "logs.error.b", "other.x"} {
				must(t, pub.Publish(ctx, topic, bus.Message{Payload: []byte(topic)}))
			}
			must(t, pub.Publish(ctx, "zz.end", bus.Message{})) // marker
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var got []string
					if tc.prefix != "zz." {
						for range tc.want {
							m := recv(t, chans[tc.name], 5*time.Second)
							if string(m.Payload) != m.Topic || m.Source != "pubber" || m.ID == "" || m.Time.IsZero() {
								t.Errorf("bad message %+v", m)
							}
							got = append(got, m.Topic)
						}
					}
					if fmt.Sprint(got) != fmt.Sprint(tc.want) {
						t.Errorf("prefix %q: got %v, want %v", tc.prefix, got, tc.want)
					}
				})
			}
			// Nothing more arrives for logs. once the marker was seen.
			recv(t, chans["nothing"], 5*time.Second)
			select {
			case m := <-chans["family"]:
				t.Errorf("unexpected %s", m.Topic)
			default:
			}
		})
	}
}

func TestRequestReply(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 10*time.Second)
	responder := e.client(t, bus.Options{Name: "gpu"})
	reqs, err := responder.Subscribe(ctx, "health.request.gpu")
	must(t, err)
	must(t, responder.Sync(ctx))
	go func() {
		for req := range reqs {
			var hr busv1.HealthRequest
			if req.Decode(&hr) != nil {
				continue
			}
			resp, _ := bus.NewProto(&busv1.HealthResponse{Plugin: "gpu", State: busv1.HealthState_HEALTH_STATE_HEALTHY})
			_ = bus.Reply(ctx, responder, req, resp)
		}
	}()
	// Health requests are the agent's: only its own client may send them.
	requester := e.agentClient(t, "ext_manager", bus.AllowAll)
	tests := []struct{ name string }{{"first"}, {"second"}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := bus.NewProto(&busv1.HealthRequest{Plugin: "gpu"})
			must(t, err)
			resp, err := requester.Request(ctx, "health.request.gpu", req)
			must(t, err)
			var hr busv1.HealthResponse
			must(t, resp.Decode(&hr))
			if hr.State != busv1.HealthState_HEALTH_STATE_HEALTHY || resp.Source != "gpu" {
				t.Fatalf("got %+v from %s", &hr, resp.Source)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := requester.Request(short, "health.request.nobody", bus.Message{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want deadline exceeded", err)
		}
	})
}

func TestBrokerRestartClientsReconnect(t *testing.T) {
	pub, sub := freeAddr(t), freeAddr(t)
	yaml := addrsYAML(pub, sub)
	s, _ := agent.NewSection(yaml)
	p, err := Factory(s)
	must(t, err)
	ctx := ctxT(t, 20*time.Second)
	b1 := p.(*Broker)
	h1 := agenttest.NewHost(t, Name, agent.HostOptions{})
	must(t, b1.Initialize(ctx, h1))
	must(t, b1.Start(ctx))

	metrics := bus.NewMetrics()
	c := bus.Dial(bus.Options{PublishEndpoint: pub, SubscribeEndpoint: sub, Name: "x", Metrics: metrics, ReconnectMax: 100 * time.Millisecond})
	defer c.Close()
	ch, err := c.Subscribe(ctx, "x.")
	must(t, err)
	must(t, c.Sync(ctx))
	must(t, c.Publish(ctx, "x.before", bus.Message{}))
	if m := recv(t, ch, 5*time.Second); m.Topic != "x.before" {
		t.Fatalf("got %s", m.Topic)
	}
	must(t, agenttest.Stop(ctx, h1, b1))

	p2, err := Factory(s)
	must(t, err)
	b2 := p2.(*Broker)
	h2 := agenttest.NewHost(t, Name, agent.HostOptions{})
	must(t, b2.Initialize(ctx, h2))
	must(t, b2.Start(ctx))
	defer agenttest.Stop(context.Background(), h2, b2)

	// Publish until one arrives: the subscription is re-sent on reconnect.
	agenttest.Eventually(t, 10*time.Second, "a delivery after the broker restart", func() bool {
		_ = c.Publish(ctx, "x.after", bus.Message{})
		select {
		case m := <-ch:
			return m.Topic == "x.after"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	if r := metrics.Reconnect.WithLabelValues("sub"); r == nil {
		t.Fatal("no reconnect metric")
	}
}

func TestSlowSubscriberDropsWithoutBlocking(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "subscriber_queue: 64"))
	ctx := ctxT(t, 20*time.Second)

	// A subscriber that subscribes to everything and never reads.
	stuck, err := zmtp.Dial(ctx, e.cfg.SubscribeAddress, zmtp.Sub, zmtp.Credentials{})
	must(t, err)
	defer stuck.Close()
	must(t, stuck.SendFlush([]byte{1}))

	// A subscriber in-process whose channel is small and never read.
	slow := e.client(t, bus.Options{Name: "slow", SubscriptionSize: 4, Metrics: e.broker.Metrics()})
	_, err = slow.Subscribe(ctx, "logs.")
	must(t, err)
	// A healthy subscriber.
	fast := e.client(t, bus.Options{Name: "fast"})
	fch, err := fast.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, fast.Sync(ctx))
	must(t, slow.Sync(ctx))
	eventually(t, 5*time.Second, "stuck subscriber registered", func() bool {
		return len(*e.broker.srv.subs.Load()) >= 3
	})

	// Publish never waits on the network: with one subscriber stuck and one
	// never reading, the loop still ends. The bound only catches a hang.
	pub := e.client(t, bus.Options{Name: "pub", QueueSize: 100000})
	const n = 5000
	payload := make([]byte, 2048)
	published := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := pub.Publish(ctx, "logs.info.pub", bus.Message{Payload: payload}); err != nil && !errors.Is(err, bus.ErrQueueFull) {
				published <- err
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		must(t, err)
	case <-ctx.Done():
		t.Fatalf("publishing %d messages did not finish: the publisher is blocked", n)
	}
	got := 0
	for got < 100 {
		recv(t, fch, 5*time.Second)
		got++
	}
	eventually(t, 10*time.Second, "broker drops for the stuck subscriber", func() bool {
		return e.counter("dropped", bus.DropSubscriberQueueFull) > 0
	})
	eventually(t, 10*time.Second, "client drops for the slow subscription", func() bool {
		return e.counter("dropped", bus.DropSubscriptionQueueFull) > 0
	})
}

func TestMalformedFramesAreCountedAndDropped(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), "max_message_bytes: 2048"))
	ctx := ctxT(t, 10*time.Second)
	sub := e.client(t, bus.Options{Name: "s"})
	ch, err := sub.Subscribe(ctx, "")
	must(t, err)
	must(t, sub.Sync(ctx))

	raw, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{})
	must(t, err)
	defer raw.Close()
	envOK := mustMarshal(t, &busv1.Envelope{Id: "ok", Source: "raw"})
	cases := []struct {
		name   string
		frames [][]byte
		reason string
	}{
		{"one frame", [][]byte{[]byte("logs.info.x")}, bus.MalformedFrames},
		{"three frames", [][]byte{[]byte("logs.info.x"), envOK, envOK}, bus.MalformedFrames},
		{"bad topic", [][]byte{[]byte("Logs..x"), envOK}, bus.MalformedTopic},
		{"binary topic", [][]byte{{0xff, 0x00}, envOK}, bus.MalformedTopic},
		{"bad envelope", [][]byte{[]byte("logs.info.x"), {0xff, 0xff, 0xff}}, bus.MalformedEnvelope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counter("malformed", tc.reason)
			must(t, raw.SendFlush(tc.frames...))
			eventually(t, 5*time.Second, tc.reason+" counted", func() bool {
				return e.counter("malformed", tc.reason) == before+1
			})
		})
	}
	// The connection survived every bad message.
	must(t, raw.SendFlush([]byte("logs.info.x"), envOK))
	for m := recv(t, ch, 5*time.Second); m.ID != "ok"; m = recv(t, ch, 5*time.Second) {
		if !strings.HasPrefix(m.Topic, bus.ReplyPrefix) {
			t.Fatalf("got %+v", m)
		}
	}
}

func TestPermissions(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t),
		"permissions:",
		"  ext_manager: {publish: [\"health.request.\", \"ext_manager.\"], subscribe: [\"plugin.\", \"health.\"]}"))
	ctx := ctxT(t, 10*time.Second)
	svc := e.broker.svc
	cases := []struct {
		plugin, op, topic string
		allowed           bool
	}{
		{"alpha", "publish", "alpha.status", true},
		{"alpha", "publish", "logs.info.alpha", true},
		{"alpha", "publish", "beta.status", false},
		{"alpha", "publish", "alerts.critical", false},
		{"alpha", "subscribe", "alpha.", true},
		{"alpha", "subscribe", "logs.", true},
		{"alpha", "subscribe", "", false},
		{"alpha", "subscribe", "lo", false},
		{"alpha", "subscribe", "reply.alpha.x", true},
		{"alpha", "subscribe", "reply.beta.", false},
		{"alpha", "publish", "reply.beta.x", true},
		{"ext_manager", "publish", "health.request.gpu", true},
		{"ext_manager", "publish", "logs.info.ext_manager", false},
		{"ext_manager", "subscribe", "plugin.", true},
		{"ext_manager", "subscribe", "logs.", false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s %q", tc.plugin, tc.op, tc.topic), func(t *testing.T) {
			b, err := svc.ClientFor(tc.plugin)
			must(t, err)
			defer b.Close()
			before := e.counter("denied", tc.plugin, tc.op)
			if tc.op == "publish" {
				err = b.Publish(ctx, tc.topic, bus.Message{})
			} else {
				sctx, cancel := context.WithCancel(ctx)
				_, err = b.Subscribe(sctx, tc.topic)
				cancel()
			}
			if tc.allowed {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if !errors.Is(err, bus.ErrDenied) {
				t.Fatalf("want ErrDenied, got %v", err)
			}
			if got := e.counter("denied", tc.plugin, tc.op); got != before+1 {
				t.Errorf("vitals_bus_denied_total = %v, want %v", got, before+1)
			}
			line := fmt.Sprintf("plugin=%s operation=%s topic=%s", tc.plugin, tc.op, tc.topic)
			if !strings.Contains(e.logs.String(), line) {
				t.Errorf("no audit line %q in log:\n%s", line, e.logs.String())
			}
		})
	}
}

func TestPlainAuth(t *testing.T) {
	t.Setenv("VITALS_TEST_BUS_PW", "s3cret")
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t),
		"auth:",
		"  users:",
		"    - {username: gpu, password_env: VITALS_TEST_BUS_PW}",
		"    - {username: watcher, password: pw2, permissions: {publish: [\"watcher.\"], subscribe: [\"plugin.\", \"logs.\", \"lifecycle.\"]}}"))
	ctx := ctxT(t, 15*time.Second)
	watcher := e.client(t, bus.Options{Name: "watcher", Username: "watcher", Password: "pw2"})
	ch, err := watcher.Subscribe(ctx, "plugin.")
	must(t, err)
	must(t, watcher.Sync(ctx))

	t.Run("good credentials", func(t *testing.T) {
		gpu := e.client(t, bus.Options{Name: "gpu", Username: "gpu", Password: "s3cret"})
		must(t, gpu.Publish(ctx, "plugin.announce", bus.Message{Payload: []byte("gpu")}))
		if m := recv(t, ch, 5*time.Second); string(m.Payload) != "gpu" {
			t.Fatalf("got %+v", m)
		}
	})
	t.Run("bad password", func(t *testing.T) {
		before := e.counter("authfail")
		_, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{Username: "gpu", Password: "wrong"})
		if err == nil {
			t.Fatal("handshake with a bad password succeeded")
		}
		eventually(t, 5*time.Second, "auth failure counted", func() bool { return e.counter("authfail") > before })
		if !strings.Contains(e.logs.String(), "bus authentication failed") {
			t.Error("no log line for the failed authentication")
		}
	})
	t.Run("bad password audited", func(t *testing.T) {
		// The broker records its refusals through the audit recorder
		// once the plugin that provides it runs.
		db, err := store.Open(ctx, filepath.Join(t.TempDir(), "audit.db"))
		must(t, err)
		lg, err := audit.New(ctx, db, audit.Options{})
		must(t, err)
		lg.Start()
		t.Cleanup(func() { _ = lg.Close(context.Background()); _ = db.Close() })
		must(t, agenttest.NewHost(t, "security", agent.HostOptions{Container: e.c}).Provide(audit.ServiceName, lg))
		e.events.Emit(agent.Event{Plugin: "security", To: agent.StateRunning})
		var recs []audit.Record
		eventually(t, 5*time.Second, "failed login audited", func() bool {
			_, _ = zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{Username: "mallory", Password: "guess"})
			recs, err = lg.Query(ctx, audit.Filter{Action: audit.ActionBusAuth})
			return err == nil && len(recs) > 0
		})
		if r := recs[0]; r.Actor != "mallory" || r.Outcome != audit.OutcomeDenied || !strings.HasPrefix(r.Remote, "127.0.0.1:") {
			t.Errorf("record %+v: want actor mallory, denied, from the connection's address", r)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if _, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, zmtp.Credentials{}); err == nil {
			t.Fatal("NULL handshake accepted by a PLAIN broker")
		}
	})
	t.Run("broker enforces user permissions", func(t *testing.T) {
		before := e.counter("denied", "watcher", "publish")
		must(t, watcher.Publish(ctx, "plugin.announce", bus.Message{Payload: []byte("spoof")}))
		eventually(t, 5*time.Second, "broker-side denial", func() bool {
			return e.counter("denied", "watcher", "publish") == before+1
		})
		beforeSub := e.counter("denied", "watcher", "subscribe")
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := watcher.Subscribe(sctx, "alerts.")
		must(t, err) // the client is unrestricted; the broker refuses
		eventually(t, 5*time.Second, "broker-side subscribe denial", func() bool {
			return e.counter("denied", "watcher", "subscribe") == beforeSub+1
		})
	})
	t.Run("in-agent clients need no credentials", func(t *testing.T) {
		b, err := e.broker.svc.ClientFor("alpha")
		must(t, err)
		defer b.Close()
		must(t, b.Publish(ctx, "logs.info.alpha", bus.Message{}))
		lch, err := watcher.Subscribe(ctx, "logs.info.alpha")
		must(t, err)
		must(t, watcher.Sync(ctx))
		must(t, b.Publish(ctx, "logs.info.alpha", bus.Message{Payload: []byte("in")}))
		if m := recv(t, lch, 5*time.Second); m.Source != "alpha" {
			t.Fatalf("got %+v", m)
		}
	})
}

func TestStartFailsWhenAddressTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	taken := "tcp://" + l.Addr().String()
	for _, tc := range []struct{ name, pub, sub string }{
		{"publish", taken, freeAddr(t)},
		{"subscribe", freeAddr(t), taken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := agent.NewSection(addrsYAML(tc.pub, tc.sub))
			p, err := Factory(s)
			must(t, err)
			ctx := ctxT(t, 5*time.Second)
			h := agenttest.NewHost(t, Name, agent.HostOptions{})
			must(t, p.Initialize(ctx, h))
			err = p.Start(ctx)
			if err == nil || !strings.Contains(err.Error(), taken) {
				t.Fatalf("Start error %v does not name %s", err, taken)
			}
			must(t, agenttest.Stop(ctx, h, p))
		})
	}
}

func TestLifecycleEventsArePublished(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 10*time.Second)
	sub := e.client(t, bus.Options{Name: "w"})
	ch, err := sub.Subscribe(ctx, "lifecycle.")
	must(t, err)
	must(t, sub.Sync(ctx))
	e.events.Emit(agent.Event{Plugin: "ext_manager", Step: "start", From: agent.StateStarting, To: agent.StateRunning, Duration: time.Millisecond, Time: time.Now()})
	m := recv(t, ch, 5*time.Second)
	var ev busv1.LifecycleEvent
	must(t, m.Decode(&ev))
	if m.Topic != "lifecycle.ext_manager" || ev.To != "running" || m.Source != Name {
		t.Fatalf("got %s %+v", m.Topic, &ev)
	}
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		s, _ := agent.NewSection(addrsYAML(freeAddr(t), freeAddr(t)))
		p, err := Factory(s)
		must(t, err)
		if md := p.Metadata(); md.Name != Name || md.Priority != agent.PriorityInfrastructure {
			t.Fatalf("metadata %+v", md)
		}
		return p
	}, nil)
}

func mustMarshal(t *testing.T, e *busv1.Envelope) []byte {
	t.Helper()
	m, err := bus.NewProto(e)
	must(t, err)
	return m.Payload
}

// topicFilter rejects topics with a given prefix.
type topicFilter struct{ reject string }

func (f topicFilter) FilterMessage(m bus.Message) error {
	if strings.HasPrefix(m.Topic, f.reject) {
		return errors.New("rejected")
	}
	return nil
}

func TestFiltersApplyBeforeDelivery(t *testing.T) {
	e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t)))
	ctx := ctxT(t, 20*time.Second)
	sub := e.client(t, bus.Options{Name: "sub"})
	ch, err := sub.Subscribe(ctx, "logs.")
	must(t, err)
	must(t, sub.Sync(ctx))
	pub := e.client(t, bus.Options{Name: "pub"})

	// A filter service appears, as when the validation plugin starts; the
	// broker looks again on every lifecycle event.
	must(t, agenttest.NewHost(t, "validation", agent.HostOptions{Container: e.c}).Provide(bus.ValidatorService, bus.Filter(topicFilter{reject: "logs.debug."})))
	e.events.Emit(agent.Event{Plugin: "validation", To: agent.StateRunning})

	must(t, pub.Publish(ctx, "logs.debug.pub", bus.Message{Payload: []byte("dropped")}))
	must(t, pub.Publish(ctx, "logs.info.pub", bus.Message{Payload: []byte("kept")}))
	m := recv(t, ch, 10*time.Second)
	if m.Topic != "logs.info.pub" {
		t.Fatalf("first delivery %s: the filtered message got through", m.Topic)
	}
	eventually(t, 10*time.Second, "filtered drop counted", func() bool {
		return e.counter("dropped", bus.DropFiltered) == 1
	})

	// The filter's plugin stops: messages flow again.
	e.gone.Store(bus.ValidatorService, true)
	e.events.Emit(agent.Event{Plugin: "validation", To: agent.StateStopped})
	must(t, pub.Publish(ctx, "logs.debug.pub", bus.Message{Payload: []byte("now kept")}))
	if m := recv(t, ch, 10*time.Second); m.Topic != "logs.debug.pub" {
		t.Fatalf("after the filter left: %s", m.Topic)
	}
}
