package extmanager

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

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
	c := NewCatalog(func() time.Time { return now })
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
	c := NewCatalog(nil)
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
	c.SetDetection("llm", probes.Detection{Kind: probes.KindUnknown, Reason: "timeouts", Attempts: 4}, errors.New("timeout"))

	p, _ = c.Get("llm")
	if p.Detection.State != DetectFailed || p.Detection.Reason != "timeouts" {
		t.Errorf("after failure: %+v", p.Detection)
	}
	want := "registered:llm updated:llm version_changed:llm updated:llm"
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
	c := NewCatalog(nil)
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
