package extmanager

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// TestHealthGetsTheDetectionThatEndsDuringStart: a detection that ends
// after startHealth listed the catalog and before it gave that list to
// the engine is not undone by the list's older copy of the plugin. The
// engine checks the plugin as the kind detected (a refused liveness
// probe makes it unhealthy for the refusal), not as a server of no kind
// (unhealthy "before its kind was identified").
func TestHealthGetsTheDetectionThatEndsDuringStart(t *testing.T) {
	c := catalog.New(nil)
	if err := c.Upsert(catalog.Spec{ID: "o", Source: catalog.SourceConfig, Endpoint: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	cfg := health.DefaultConfig()
	cfg.Interval, cfg.UnhealthyInterval = agent.Duration(10*time.Millisecond), agent.Duration(10*time.Millisecond)
	cfg.StartSpread = 0
	e := &ExtManager{catalog: c, engine: health.New(health.Options{Config: cfg}), clients: &clients{}}

	// startHealth's steps, with the detection's event between its list
	// and its pass over it.
	listed := c.List(catalog.Filter{})
	defer c.Subscribe(func(ev catalog.Event) { e.syncHealth(ev.ID) })()
	c.SetDetection("o", probes.Detection{Kind: probes.KindOllama}, nil)
	for _, p := range listed {
		e.syncHealth(p.ID)
	}
	e.engine.Start()
	defer func() { _ = e.engine.Stop(context.Background()) }()

	var st health.Status
	agenttest.Eventually(t, 10*time.Second, "o unhealthy", func() bool {
		st, _ = e.engine.Status("o")
		return st.State == health.StateUnhealthy
	})
	if strings.Contains(st.Reason, "kind was identified") {
		t.Fatalf("checked without the kind detected: %s", st.Reason)
	}
}
