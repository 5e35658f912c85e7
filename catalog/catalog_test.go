package catalog

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/heaptest"
	"github.com/vitals-dev/vitals/probes"
)

type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
}

func (l *eventLog) types() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		out = append(out, string(e.Type)+":"+e.ID)
	}
	return strings.Join(out, " ")
}

func TestCatalogEvents(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(func() time.Time { return now })
	var log eventLog
	c.Subscribe(log.add)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a := Spec{ID: "a", Source: SourceBus, Version: "1.0", Capabilities: []probes.Capability{probes.CapEmbeddings, probes.CapChat}}
	must(c.Upsert(a))
	must(c.Upsert(a)) // same again: no event
	a.Labels = map[string]string{"zone": "x"}
	must(c.Upsert(a))
	a.Version = "1.1"
	must(c.Upsert(a))
	if err := c.Upsert(Spec{ID: "a", Source: SourceConfig, Endpoint: "http://127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "already registered by source bus") {
		t.Errorf("conflicting source: %v", err)
	}
	c.MarkLost("a", "silent")
	c.MarkLost("a", "silent") // once
	if !c.Touch("a", SourceBus, "") {
		t.Error("Touch of a known plugin")
	}
	if c.Touch("a", SourceConfig, "") {
		t.Error("Touch from the wrong source succeeded")
	}
	if c.Remove("a", SourceConfig, "x") {
		t.Error("Remove from the wrong source succeeded")
	}
	if !c.Remove("a", SourceBus, "goodbye") {
		t.Error("Remove failed")
	}
	want := "registered:a updated:a version_changed:a lost:a updated:a deregistered:a"
	if got := log.types(); got != want {
		t.Errorf("events = %s\nwant     %s", got, want)
	}
	if err := c.Upsert(Spec{ID: "Bad Id", Source: SourceBus}); err == nil {
		t.Error("invalid id accepted")
	}
}

func TestCatalogDetection(t *testing.T) {
	c := New(nil)
	var log eventLog
	c.Subscribe(log.add)
	if err := c.Upsert(Spec{ID: "llm", Source: SourceConfig, Endpoint: "http://127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("llm")
	if p.Detection.State != DetectPending || p.Kind != probes.KindAuto {
		t.Fatalf("before detection: %+v", p)
	}
	det := probes.Detection{Kind: probes.KindLlamaCpp, Version: "b5000", Capabilities: []probes.Capability{probes.CapCompletion, probes.CapChat},
		Models: []probes.Model{{ID: "tiny"}}, Attempts: 1}
	c.SetDetection("llm", det, nil)
	c.SetDetection("llm", det, nil) // unchanged: no event
	det.Version = "b5001"
	c.SetDetection("llm", det, nil)
	det.Models = []probes.Model{{ID: "tiny-renamed"}} // same count, another name
	c.SetDetection("llm", det, nil)
	c.SetDetection("llm", probes.Detection{Kind: probes.KindUnknown, Reason: "timeouts", Attempts: 4}, errors.New("timeout"))

	p, _ = c.Get("llm")
	if p.Detection.State != DetectFailed || p.Detection.Reason != "timeouts" {
		t.Errorf("after failure: %+v", p.Detection)
	}
	want := "registered:llm updated:llm version_changed:llm updated:llm updated:llm"
	if got := log.types(); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	for _, e := range log.evs[1:] {
		if !e.FromDetection {
			t.Errorf("%s not marked as from detection", e.Type)
		}
	}
	if got := log.evs[2].OldVersion; got != "b5000" {
		t.Errorf("old version = %q", got)
	}
}

func TestCatalogReconcileAndFilter(t *testing.T) {
	c := New(nil)
	errs := c.Reconcile(SourceConfig, []Spec{
		{ID: "one", Endpoint: "http://127.0.0.1:1"},
		{ID: "two", Endpoint: "http://127.0.0.1:2", Kind: probes.KindOllama},
		{ID: "BAD"},
	}, "gone")
	if len(errs) != 1 {
		t.Errorf("errors = %v, want one for BAD", errs)
	}
	c.SetDetection("two", probes.Detection{Kind: probes.KindOllama, Capabilities: []probes.Capability{probes.CapEmbeddings}}, nil)
	if got := ids(c.List(Filter{Capability: probes.CapEmbeddings})); got != "two" {
		t.Errorf("embeddings = %s", got)
	}
	if got := ids(c.List(Filter{Kind: probes.KindAuto})); got != "one" {
		t.Errorf("kind auto = %s", got)
	}
	if got := ids(c.List(Filter{Health: "unknown"})); got != "one two" {
		t.Errorf("health unknown = %s", got)
	}
	c.Reconcile(SourceConfig, []Spec{{ID: "two", Endpoint: "http://127.0.0.1:2", Kind: probes.KindOllama}}, "gone")
	if got := ids(c.List(Filter{})); got != "two" {
		t.Errorf("after reconcile = %s", got)
	}
}

func ids(ps []AIPlugin) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return strings.Join(out, " ")
}

// Claim's bounds follow plugins as they come, change hands and go.
func TestClaimBoundsFollowOwners(t *testing.T) {
	c := New(nil)
	lim := Limits{Max: 2, PerOwner: 1}
	claim := func(id, owner string) error {
		return c.Claim(Spec{ID: id, Source: SourceBus, Owner: owner}, lim)
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"first of o1", func() error { return claim("a", "o1") }, nil},
		{"o1 again, same id", func() error { return claim("a", "o1") }, nil},
		{"o1 over its bound", func() error { return claim("b", "o1") }, ErrOwnerFull},
		{"o2 takes an active id", func() error { return claim("a", "o2") }, ErrNotOwner},
		{"o2's own", func() error { return claim("b", "o2") }, nil},
		{"o3 past the total", func() error { return claim("c", "o3") }, ErrCatalogFull},
		{"o2 leaves o1's", func() error { _, err := c.Leave("a", SourceBus, "o2", "x"); return err }, ErrNotOwner},
		{"o1 leaves", func() error { _, err := c.Leave("a", SourceBus, "o1", "x"); return err }, nil},
		{"o1 has room again", func() error { return claim("c", "o1") }, nil},
		{"o3 takes o2's lost one", func() error { c.MarkLost("b", "silent"); return claim("b", "o3") }, nil},
		{"o2 holds nothing now", func() error { return claim("d", "o2") }, ErrCatalogFull},
		{"removed by silence", func() error { c.Remove("b", SourceBus, "gone"); return claim("d", "o2") }, nil},
		{"config plugins are not counted", func() error {
			if err := c.Upsert(Spec{ID: "e", Source: SourceConfig, Endpoint: "http://127.0.0.1:1"}); err != nil {
				return err
			}
			if _, err := c.Leave("d", SourceBus, "o2", "bye"); err != nil {
				return err
			}
			return claim("a", "o2")
		}, nil},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}
	if p, _ := c.Get("b"); p.Owner != "" {
		t.Fatalf("b after removal: %+v", p)
	}
}

// Detection that learns no capabilities keeps the ones the source
// declared; detection that learns some replaces them.
func TestDetectionKeepsDeclaredCapabilities(t *testing.T) {
	c := New(nil)
	c.Reconcile(SourceConfig, []Spec{{ID: "gw", Endpoint: "http://127.0.0.1:1", Kind: probes.KindAuto,
		Capabilities: []probes.Capability{probes.CapEmbeddings}}}, "test")
	c.SetDetection("gw", probes.Detection{Kind: probes.KindOpenAI, Models: []probes.Model{{ID: "a"}, {ID: "b"}}}, nil)
	if p, _ := c.Get("gw"); !slices.Equal(p.Capabilities, []probes.Capability{probes.CapEmbeddings}) {
		t.Fatalf("after a detection that learned nothing: %v", p.Capabilities)
	}
	c.SetDetection("gw", probes.Detection{Kind: probes.KindLlamaCpp, Capabilities: []probes.Capability{probes.CapChat}}, nil)
	if p, _ := c.Get("gw"); !slices.Equal(p.Capabilities, []probes.Capability{probes.CapChat}) {
		t.Fatalf("after a detection that learned chat: %v", p.Capabilities)
	}
}

// SetHealth keeps the latest verdict in place, allocating nothing once a
// plugin has one, and a copy taken before (Get, List, an event) keeps
// the verdict it was taken with.
func TestSetHealthInPlace(t *testing.T) {
	c := New(nil)
	if err := c.Upsert(Spec{ID: "p", Source: SourceConfig, Endpoint: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
	verdict := func(s health.State, seq int64) health.Status {
		return health.Status{ID: "p", State: s, Checked: at,
			Last: &health.CheckRecord{Seq: seq, Plugin: "p", State: s, Probes: []health.ProbeOutcome{{Probe: probes.Liveness}}}}
	}
	c.SetHealth("p", verdict(health.StateHealthy, 1))
	before, _ := c.Get("p")
	list := c.List(Filter{})
	c.SetHealth("p", verdict(health.StateUnhealthy, 2))
	for name, p := range map[string]AIPlugin{"get": before, "list": list[0]} {
		if p.Health.State != health.StateHealthy || p.Health.Last.Seq != 1 || p.Health.Last.State != health.StateHealthy {
			t.Errorf("%s: a copy taken before changed with the next verdict: %+v, last %+v", name, *p.Health, *p.Health.Last)
		}
	}
	after, _ := c.Get("p")
	if after.Health.State != health.StateUnhealthy || after.Health.Last.Seq != 2 ||
		len(after.Health.Last.Probes) != 1 {
		t.Errorf("after the second verdict: %+v, last %+v", *after.Health, *after.Health.Last)
	}
	v := verdict(health.StateHealthy, 3)
	v.Last.Probes = nil // as the engine hands it
	if n := testing.AllocsPerRun(100, func() { c.SetHealth("p", v) }); n != 0 {
		t.Errorf("SetHealth allocates %v times a verdict, want 0", n)
	}
	c.SetHealth("p", health.Status{ID: "p", State: health.StateUnknown})
	if p, _ := c.Get("p"); p.Health.Last != nil || p.Health.State != health.StateUnknown {
		t.Errorf("a verdict without a last check: %+v", *p.Health)
	}
}

// TestCatalogEntryIsSmall: what the catalog holds for a detected server
// with a verdict stays small: every byte of it is held a thousand times at
// 1000 targets. (It was 1264 bytes with the verdict's status carrying an
// emptied target, 1088 with the source's whole spec kept beside the fields
// that repeat it, 934 with a copy of the verdict's last check, which the
// engine keeps too.)
func TestCatalogEntryIsSmall(t *testing.T) {
	c := New(nil)
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%05d", i)
	}
	labels := map[string]string{"zone": "a"}
	models := []probes.Model{{ID: "m", Capabilities: []probes.Capability{probes.CapChat}}}
	at := time.Unix(1_800_000_000, 0)
	// The last checks are the engine's, made before the verdicts come.
	lasts := make([]*health.CheckRecord, n)
	for i, id := range ids {
		lasts[i] = &health.CheckRecord{Seq: 1, Plugin: id, Time: at, State: health.StateHealthy, OK: true}
	}
	heaptest.PerItem(t, "a plugin", n, 800, func() {
		for i, id := range ids {
			if err := c.Upsert(Spec{ID: id, Source: SourceConfig, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:8000", Labels: labels}); err != nil {
				t.Fatal(err)
			}
			c.SetDetection(id, probes.Detection{Kind: probes.KindOpenAI, Models: models, Capabilities: []probes.Capability{probes.CapChat}}, nil)
			c.SetHealth(id, health.Status{ID: id, State: health.StateHealthy, Checked: at, Checks: 1, Last: lasts[i]})
		}
	})
	if p, ok := c.Get(ids[7]); !ok || p.Spec().Endpoint != "http://127.0.0.1:8000" || p.Spec().Labels["zone"] != "a" || p.Health.Last.Seq != 1 {
		t.Errorf("plugin %+v", p)
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(lasts)
}
