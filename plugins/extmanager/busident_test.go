package extmanager_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// rejected returns vitals_ai_bus_rejected_total{reason}.
func rejected(t testing.TB, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vitals_ai_bus_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// awaitRejected waits until reason was counted n times.
func (r *rig) awaitRejected(reason string, n float64) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	if !agenttest.Within(time.Until(deadline), func() bool { return rejected(r.t, r.metrics, reason) >= n }) {
		r.t.Fatalf("%s rejections: %v, want %v", reason, rejected(r.t, r.metrics, reason), n)
	}
}

func send(t *testing.T, b bus.Bus, topic string, m proto.Message) {
	t.Helper()
	msg, err := bus.NewProto(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), topic, msg); err != nil {
		t.Fatal(err)
	}
}

// TestBusPluginBelongsToItsAnnouncer: a plugin id is the peer's that
// announced it; another peer, whatever source it claims, can neither
// re-announce it, heartbeat for it nor say goodbye for it, until it is
// lost.
func TestBusPluginBelongsToItsAnnouncer(t *testing.T) {
	r := start(t, "directory: \"\"\nbus: {lost_after: 2, deregister_after: 1000, default_heartbeat: 20ms}\n")
	alice := r.bus.External("user:alice", "127.0.0.1:40001", "gpu_probe", bus.AllowAll)
	mallory := r.bus.External("user:mallory", "127.0.0.1:40002", "gpu_probe", bus.AllowAll)

	announce(t, alice, &busv1.Announce{Name: "gpu_probe", Version: "1.0.0", HeartbeatIntervalMs: 60000})
	if ev := r.await(catalog.EventRegistered, "gpu_probe"); ev.Plugin.Owner != "user:alice" {
		t.Fatalf("owner = %q, want user:alice", ev.Plugin.Owner)
	}

	announce(t, mallory, &busv1.Announce{Name: "gpu_probe", Version: "6.6.6", HeartbeatIntervalMs: 60000})
	send(t, mallory, extmanager.TopicGoodbye, &busv1.Goodbye{Name: "gpu_probe", Reason: "spoofed"})
	send(t, mallory, extmanager.TopicHeartbeat, &busv1.Heartbeat{Name: "gpu_probe"})
	r.awaitRejected("not_owner", 3)
	if p, ok := r.e.Catalog().Get("gpu_probe"); !ok || p.Version != "1.0.0" || p.Owner != "user:alice" {
		t.Fatalf("after another peer's announce and goodbye: %+v, %v", p, ok)
	}

	// Its owner's goodbye is honoured.
	send(t, alice, extmanager.TopicGoodbye, &busv1.Goodbye{Name: "gpu_probe", Reason: "done"})
	r.await(catalog.EventDeregistered, "gpu_probe")

	// Once lost, the id may be taken by another peer.
	announce(t, alice, &busv1.Announce{Name: "gpu_probe", Version: "1.0.0", HeartbeatIntervalMs: 20})
	r.await(catalog.EventRegistered, "gpu_probe")
	r.await(catalog.EventLost, "gpu_probe")
	announce(t, mallory, &busv1.Announce{Name: "gpu_probe", Version: "2.0.0", HeartbeatIntervalMs: 60000})
	if ev := r.await(catalog.EventVersionChanged, "gpu_probe"); ev.Plugin.Owner != "user:mallory" {
		t.Fatalf("lost plugin taken over by %q, want user:mallory", ev.Plugin.Owner)
	}
}

// TestBusRegistrationsAudited: the audit log says what became of each
// registration and deregistration asked for over the bus, under the
// broker's identity of the asker: a refused one is denied with the
// reason, not a success.
func TestBusRegistrationsAudited(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	log, err := audit.New(ctx, db, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log.Start()
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	r := startWith(t, "directory: \"\"\nhealth: {enabled: false}\n", map[string]any{audit.ServiceName: log})
	alice := r.bus.External("user:alice", "127.0.0.1:40001", "gpu_probe", bus.AllowAll)
	mallory := r.bus.External("user:mallory", "127.0.0.1:40002", "alice_said_so", bus.AllowAll)

	announce(t, alice, &busv1.Announce{Name: "gpu_probe", Version: "1.0.0", HeartbeatIntervalMs: 60000})
	r.await(catalog.EventRegistered, "gpu_probe")
	announce(t, mallory, &busv1.Announce{Name: "gpu_probe", Version: "6.6.6", HeartbeatIntervalMs: 60000})
	send(t, mallory, extmanager.TopicGoodbye, &busv1.Goodbye{Name: "gpu_probe", Reason: "spoofed"})
	announce(t, mallory, &busv1.Announce{Name: "elsewhere", Endpoint: "http://169.254.169.254/", HeartbeatIntervalMs: 60000})
	r.awaitRejected("endpoint", 1)
	send(t, alice, extmanager.TopicGoodbye, &busv1.Goodbye{Name: "gpu_probe", Reason: "done"})
	r.await(catalog.EventDeregistered, "gpu_probe")

	want := []string{
		"user:alice plugin.register gpu_probe success 127.0.0.1:40001",
		"user:mallory plugin.register gpu_probe denied 127.0.0.1:40002",
		"user:mallory plugin.deregister gpu_probe denied 127.0.0.1:40002",
		"user:mallory plugin.register elsewhere denied 127.0.0.1:40002",
		"user:alice plugin.deregister gpu_probe success 127.0.0.1:40001",
	}
	var got []string
	var bad []string
	matched := agenttest.Within(10*time.Second, func() bool {
		recs, err := log.Query(ctx, audit.Filter{Action: "plugin."})
		if err != nil {
			t.Fatal(err)
		}
		got, bad = got[:0], bad[:0]
		for i := len(recs) - 1; i >= 0; i-- { // newest first
			rec := recs[i]
			got = append(got, strings.Join([]string{rec.Actor, rec.Action, rec.Target, rec.Outcome, rec.Remote}, " "))
			if rec.Actor == "user:mallory" && !strings.Contains(rec.Detail, `claimed source "alice_said_so"`) {
				bad = append(bad, "mallory's record does not name the claimed source: "+rec.Detail)
			}
			if rec.Outcome == audit.OutcomeDenied && !strings.Contains(rec.Detail, "another peer") && !strings.Contains(rec.Detail, "not allowed") {
				bad = append(bad, "a denied record without the reason: "+rec.Detail)
			}
		}
		return strings.Join(got, "\n") == strings.Join(want, "\n")
	})
	if !matched {
		t.Fatalf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// TestBusEndpointAllowList: an announced endpoint must name a host in
// bus.allowed_endpoints (default: loopback and the announcer's address).
func TestBusEndpointAllowList(t *testing.T) {
	for _, tc := range []struct {
		name, allowed, from, endpoint string
		ok                            bool
	}{
		{"loopback", "", "10.0.0.5:4000", "http://127.0.0.1:8080", true},
		{"localhost", "", "10.0.0.5:4000", "http://localhost:8080", true},
		{"ipv6 loopback", "", "10.0.0.5:4000", "http://[::1]:8080", true},
		{"the announcer's own address", "", "10.0.0.5:4000", "http://10.0.0.5:8080", true},
		{"another host", "", "10.0.0.5:4000", "http://10.0.0.6:8080", false},
		{"cloud metadata", "", "10.0.0.5:4000", "http://169.254.169.254/latest/meta-data", false},
		{"a host name", "", "10.0.0.5:4000", "http://metadata.google.internal/", false},
		{"a listed prefix", "[loopback, 10.9.0.0/16]", "10.0.0.5:4000", "http://10.9.3.4:8080", true},
		{"peer not listed", "[loopback, 10.9.0.0/16]", "10.0.0.5:4000", "http://10.0.0.5:8080", false},
		{"a listed host name", "[gpu-box.example]", "10.0.0.5:4000", "http://GPU-box.example:8080", true},
		{"a path prefix", "", "10.0.0.5:4000", "http://127.0.0.1:8080/llm", true},
		// The probes append their paths to the endpoint: a fragment or a
		// query would let the announcer pick the whole path and method of
		// a request to any loopback service.
		{"a fragment", "", "10.0.0.5:4000", "http://127.0.0.1:9464/api/v1/admin/plugins/extmanager/disable#", false},
		{"a query", "", "10.0.0.5:4000", "http://127.0.0.1:9464/api/v1/admin/reload?x=", false},
		// Credentials belong in an http_config: one in the URL is invalid
		// wherever it comes from.
		{"user info", "", "10.0.0.5:4000", "http://user:pw@127.0.0.1:8080", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			section := "directory: \"\"\nhealth: {enabled: false}\ndetection: {attempts: 1, timeout: 100ms}\n"
			if tc.allowed != "" {
				section += "bus: {allowed_endpoints: " + tc.allowed + "}\n"
			}
			r := start(t, section)
			ext := r.bus.External("conn:1@"+tc.from, tc.from, "probe", bus.AllowAll)
			announce(t, ext, &busv1.Announce{Name: "probe", Endpoint: tc.endpoint, HeartbeatIntervalMs: 60000})
			if tc.ok {
				r.await(catalog.EventRegistered, "probe")
				return
			}
			reason := "endpoint"
			if tc.name == "user info" {
				reason = "invalid"
			}
			r.awaitRejected(reason, 1)
			if _, ok := r.e.Catalog().Get("probe"); ok {
				t.Fatalf("endpoint %s from %s was registered", tc.endpoint, tc.from)
			}
		})
	}
}

// TestBusAnnounceBounds: bus plugins are bounded in all and per peer, and
// the strings an announcement carries are bounded; every refusal is
// counted by reason.
func TestBusAnnounceBounds(t *testing.T) {
	r := start(t, "directory: \"\"\nhealth: {enabled: false}\nbus: {max_plugins: 3, max_plugins_per_peer: 2}\n")
	a := r.bus.External("conn:1@127.0.0.1:1", "127.0.0.1:1", "a", bus.AllowAll)
	b := r.bus.External("conn:2@127.0.0.1:2", "127.0.0.1:2", "b", bus.AllowAll)
	for _, name := range []string{"a1", "a2", "a3"} {
		announce(t, a, &busv1.Announce{Name: name, HeartbeatIntervalMs: 60000})
	}
	r.awaitRejected("peer_full", 1)
	for _, name := range []string{"b1", "b2"} {
		announce(t, b, &busv1.Announce{Name: name, HeartbeatIntervalMs: 60000})
	}
	r.awaitRejected("catalog_full", 1)
	var ids []string
	for _, p := range r.e.Catalog().List(catalog.Filter{Source: catalog.SourceBus}) {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "a1,a2,b1" {
		t.Fatalf("bus plugins %v, want a1,a2,b1", ids)
	}
	// Re-announcing what a peer holds is no new entry.
	announce(t, a, &busv1.Announce{Name: "a1", Version: "2", HeartbeatIntervalMs: 60000})
	r.awaitWhere(catalog.EventUpdated, "a1", func(ev catalog.Event) bool { return ev.Version == "2" })

	for _, tc := range []struct {
		name string
		a    *busv1.Announce
	}{
		{"long version", &busv1.Announce{Name: "b1", Version: strings.Repeat("v", 65)}},
		{"control characters in the version", &busv1.Announce{Name: "b1", Version: "1\n2"}},
		{"long label value", &busv1.Announce{Name: "b1", Labels: map[string]string{"team": strings.Repeat("x", 129)}}},
		{"long label name", &busv1.Announce{Name: "b1", Labels: map[string]string{strings.Repeat("k", 64): "x"}}},
		{"too many labels", &busv1.Announce{Name: "b1", Labels: manyLabels(17)}},
		{"long name", &busv1.Announce{Name: strings.Repeat("n", 64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rejected(t, r.metrics, "invalid")
			announce(t, b, tc.a)
			r.awaitRejected("invalid", before+1)
			if p, _ := r.e.Catalog().Get("b1"); p.Version != "" || len(p.Labels) != 0 {
				t.Fatalf("b1 changed by a refused announcement: %+v", p)
			}
		})
	}
}

func manyLabels(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[string(rune('a'+i))] = "x"
	}
	return m
}

// TestBusHealthAnsweredOnlyByTheAnnouncer: another peer that answers a
// plugin's health request (anyone may subscribe to it and publish replies)
// does not make the plugin healthy.
func TestBusHealthAnsweredOnlyByTheAnnouncer(t *testing.T) {
	r := start(t, "directory: \"\"\nbus: {enabled: true, default_heartbeat: 1s}\n"+fastHealth)
	owner := r.bus.External("user:alice", "127.0.0.1:40001", "worker", bus.AllowAll)
	forger := r.bus.External("user:mallory", "127.0.0.1:40002", "worker", bus.AllowAll)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reqs, err := forger.Subscribe(ctx, extmanager.TopicHealthRequest+"worker")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for req := range reqs {
			resp, _ := bus.NewProto(&busv1.HealthResponse{Plugin: "worker", State: busv1.HealthState_HEALTH_STATE_HEALTHY, Message: "forged"})
			_ = bus.Reply(ctx, forger, req, resp)
		}
	}()
	announce(t, owner, &busv1.Announce{Name: "worker", Version: "1", HeartbeatIntervalMs: 1000})
	r.awaitHealth("worker", func(h *health.Status) bool {
		return h != nil && h.State != health.StateHealthy && h.Last != nil && h.Last.Probe == "bus_health" &&
			h.Class == probes.ClassBadResponse
	})
}
