package messagebus

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/zmtp"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// TestAgentTopicsRefusedFromExternalConnections: health, alerts,
// lifecycle, extmanager and audit topics reach subscribers only from the
// agent's own plugins, under NULL and under PLAIN even for a user allowed
// everything; other topics and health answers pass.
func TestAgentTopicsRefusedFromExternalConnections(t *testing.T) {
	agentOnly := []string{"health.status.gpu", "health.request.gpu", "alerts.critical", "lifecycle.extmanager", "extmanager.registered", "audit.plugin"}
	for _, tc := range []struct {
		name  string
		extra []string
		opts  bus.Options
		who   string
	}{
		{name: "null", opts: bus.Options{Name: "intruder"}},
		{name: "plain", extra: []string{"auth:", "  users:", `    - {username: root, password: pw, permissions: {publish: ["*"], subscribe: ["*"]}}`},
			opts: bus.Options{Name: "intruder", Username: "root", Password: "pw"}, who: "root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), tc.extra...))
			ctx := ctxT(t, 15*time.Second)
			watch := e.agentClient(t, "watch", bus.AllowAll)
			ch, err := watch.Subscribe(ctx, "")
			must(t, err)
			must(t, watch.Sync(ctx))

			ext := e.client(t, tc.opts)
			for _, topic := range agentOnly {
				must(t, ext.Publish(ctx, topic, bus.Message{Payload: []byte(topic)}))
			}
			must(t, ext.Publish(ctx, "health.response", bus.Message{Payload: []byte("health.response")}))
			must(t, ext.Publish(ctx, "plugin.goodbye", bus.Message{Payload: []byte("plugin.goodbye")}))
			must(t, watch.Publish(ctx, "health.status.gpu", bus.Message{Payload: []byte("from the agent")}))

			// The external connection's messages arrive in order, so its
			// refused ones would come before its goodbye.
			var got []string
			for len(got) < 3 {
				m := recv(t, ch, 5*time.Second)
				if strings.HasPrefix(m.Topic, "reply.") {
					continue // Sync's own traffic
				}
				got = append(got, m.Topic+"="+string(m.Payload))
			}
			slices.Sort(got)
			want := "[health.response=health.response health.status.gpu=from the agent plugin.goodbye=plugin.goodbye]"
			if s := fmt.Sprint(got); s != want {
				t.Fatalf("subscriber got %s, want %s", s, want)
			}
			who := tc.who
			if who == "" {
				who = "anonymous"
			}
			var denied float64
			eventually(t, 5*time.Second, "denials counted", func() bool {
				denied = e.counter("denied", who, "publish")
				return denied >= float64(len(agentOnly))
			})
			if denied != float64(len(agentOnly)) {
				t.Errorf("denials counted for %s: %v, want %d", who, denied, len(agentOnly))
			}
			if logs := e.logs.String(); !strings.Contains(logs, "only the agent publishes this topic") {
				t.Error("no audit line names why the publish was refused")
			}
		})
	}
}

// TestBrokerStampsPeer: every forwarded envelope carries the identity of
// the connection it came from, over whatever the publisher wrote there.
func TestBrokerStampsPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		cred  zmtp.Credentials
		want  func(string) bool
	}{
		{name: "null", cred: zmtp.Credentials{}, want: func(p string) bool { return strings.HasPrefix(p, "conn:") && strings.Contains(p, "@127.0.0.1:") }},
		{name: "plain", extra: []string{"auth:", "  users:", "    - {username: gpu, password: pw}"},
			cred: zmtp.Credentials{Username: "gpu", Password: "pw"}, want: func(p string) bool { return p == "user:gpu" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startBroker(t, addrsYAML(freeAddr(t), freeAddr(t), tc.extra...))
			ctx := ctxT(t, 15*time.Second)
			watch := e.agentClient(t, "watch", bus.AllowAll)
			ch, err := watch.Subscribe(ctx, "gpu.")
			must(t, err)
			must(t, watch.Sync(ctx))

			// A raw connection, so the envelope can claim anything.
			c, err := zmtp.Dial(ctx, e.cfg.PublishAddress, zmtp.Pub, tc.cred)
			must(t, err)
			defer c.Close()
			if _, err := c.Recv(); err != nil { // the broker's subscription
				t.Fatal(err)
			}
			env, err := proto.Marshal(&busv1.Envelope{Id: "x1", Source: "ext_manager", Peer: bus.PeerAgent, PeerAddress: "", Time: timestamppb.Now()})
			must(t, err)
			must(t, c.SendFlush([]byte("gpu.claim"), env))
			m := recv(t, ch, 5*time.Second)
			if !tc.want(m.Peer) || !strings.HasPrefix(m.PeerAddress, "127.0.0.1:") {
				t.Fatalf("peer %q from %q: the broker did not stamp the connection's identity", m.Peer, m.PeerAddress)
			}
			if m.Source != "ext_manager" {
				t.Errorf("source %q: the claim itself is passed on as sent", m.Source)
			}

			must(t, watch.Publish(ctx, "gpu.own", bus.Message{}))
			if m := recv(t, ch, 5*time.Second); m.Peer != bus.PeerAgent || m.PeerAddress != "" {
				t.Fatalf("the agent's own message came as peer %q from %q", m.Peer, m.PeerAddress)
			}
		})
	}
}
