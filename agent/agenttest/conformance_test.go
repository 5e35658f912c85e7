package agenttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

// The fake plugin keeps the contract, goroutines of its Host included.
func TestConformanceOfTheFake(t *testing.T) {
	agenttest.Conformance(t, func(*testing.T) agent.Plugin {
		p := agenttest.New(nil, agent.Metadata{Name: "fake", Description: "fake", Priority: agent.PriorityBusiness})
		p.Workers = 2
		return p
	}, nil)
}

// Stop ends a plugin as the manager does: its Host's goroutines have
// returned when Stop does, and one that outlives the bound is an error.
func TestStopEndsTheHostsGoroutines(t *testing.T) {
	j := &agenttest.Journal{}
	p := agenttest.New(j, agent.Metadata{Name: "fake", Priority: agent.PriorityBusiness})
	p.Workers = 2
	h := agenttest.NewHost(t, "fake", agent.HostOptions{})
	ctx := context.Background()
	if err := p.Initialize(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := agenttest.Stop(ctx, h, p); err != nil {
		t.Fatal(err)
	}
	if got := j.Steps("worker"); len(got) != 2 {
		t.Errorf("workers ended by the time Stop returned: %v, want 2", got)
	}

	stuck := agenttest.New(nil, agent.Metadata{Name: "stuck", Priority: agent.PriorityBusiness})
	stuck.Workers = 1
	stuck.Faults["worker"] = agenttest.Stuck
	defer stuck.Release()
	sh := agent.NewHost("stuck", agent.HostOptions{})
	if err := stuck.Initialize(ctx, sh); err != nil {
		t.Fatal(err)
	}
	if err := stuck.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := agenttest.Stop(bctx, sh, stuck); err == nil {
		t.Error("Stop of a plugin whose goroutine ignores its ctx returned nil")
	}
}
