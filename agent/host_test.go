package agent_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

// The goroutines a plugin starts with its Host's Go are the host's: their
// ctx ends when the stop begins, and the stop is over only when they have
// returned.
func TestHostEndsPluginGoroutinesAtStop(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"busy": {Workers: 3},
	})
	if err := r.m.Start(context.Background(), r.config(t, "", "busy")); err != nil {
		t.Fatal(err)
	}
	if got := r.fleet.Journal.Steps("worker"); len(got) != 0 {
		t.Fatalf("workers ended while running: %v", got)
	}
	if err := r.m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.fleet.Journal.Steps("worker"); len(got) != 3 {
		t.Errorf("workers that ended by the time Stop returned: %v, want 3", got)
	}
	if st, reason := r.state("busy"); st != agent.StateStopped {
		t.Errorf("busy = %s %q, want stopped", st, reason)
	}
}

// A goroutine that ignores its ctx past stop_timeout gets its plugin
// abandoned, as a step that overran its bound does: failed, never stepped
// again, and named by shutdown as left running.
func TestHostAbandonsPluginWhoseGoroutinesOutliveStop(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"wedged": {Workers: 1, Faults: map[string]agenttest.Fault{"worker": agenttest.Stuck}},
		"fine":   {Workers: 1},
	})
	if err := r.m.Start(context.Background(), r.timeouts(t, "1s", "100ms", "wedged", "fine")); err != nil {
		t.Fatal(err)
	}
	err := within(t, 5*time.Second, "Stop", func() error { return r.m.Stop(context.Background()) })
	if !errors.Is(err, agent.ErrAbandoned) || !strings.Contains(err.Error(), "wedged (goroutines it started still run)") {
		t.Errorf("Stop = %v, want ErrAbandoned naming wedged's goroutines", err)
	}
	st, _ := r.m.Plugin(context.Background(), "wedged")
	if st.State != agent.StateFailed || !st.Abandoned || !strings.Contains(st.LastError, `1 goroutine(s) of plugin "wedged" still run`) {
		t.Errorf("wedged = %s abandoned=%v %q, want failed, abandoned, naming its goroutine", st.State, st.Abandoned, st.LastError)
	}
	if v := testutil.ToFloat64(mustVec(t, r.metrics, "vitals_plugin_abandoned", map[string]string{"plugin": "wedged"})); v != 1 {
		t.Errorf("vitals_plugin_abandoned{plugin=wedged} = %v, want 1", v)
	}
	if st, reason := r.state("fine"); st != agent.StateStopped {
		t.Errorf("fine = %s %q, want stopped", st, reason)
	}
	r.fleet.ReleaseAll()
	agenttest.Eventually(t, 5*time.Second, "the released worker ends", func() bool {
		return len(r.fleet.Journal.Steps("worker")) == 2
	})
}

// subscriber counts the lifecycle events it sees through its Host and
// reads its section back from it.
type subscriber struct {
	agent.Base
	seen    atomic.Int32
	host    agent.Host
	started chan struct{}
	live    *atomic.Pointer[subscriber] // the instance the host initialized
}

func (s *subscriber) Initialize(_ context.Context, h agent.Host) error {
	s.host = h
	s.live.Store(s)
	return nil
}

func (s *subscriber) Start(context.Context) error {
	s.host.SubscribeEvents(func(agent.Event) { s.seen.Add(1) })
	s.host.Go(func(ctx context.Context) {
		close(s.started)
		<-ctx.Done()
	})
	return nil
}

func (s *subscriber) Stop(context.Context) error { return nil }

func (s *subscriber) Reload(context.Context, agent.Section) error { return nil }

// The host ends a plugin's event subscriptions when it stops the plugin,
// and a reload's section is what the plugin's Host shows.
func TestHostEndsSubscriptionsAndTracksSection(t *testing.T) {
	fleet := agenttest.NewFleet(map[string]agenttest.Spec{"other": {}})
	reg := fleet.Registry()
	var live atomic.Pointer[subscriber]
	if err := reg.Register("sub", func(agent.Section) (agent.Plugin, error) {
		return &subscriber{Base: agent.NewBase(agent.Metadata{Name: "sub", Priority: agent.PriorityBusiness}), started: make(chan struct{}), live: &live}, nil
	}); err != nil {
		t.Fatal(err)
	}
	m := agent.NewManager(agent.ManagerOptions{Registry: reg})
	defer func() { _ = m.Stop(context.Background()) }()
	parse := func(text string) *agent.Config {
		t.Helper()
		cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(text), reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := m.Start(context.Background(), parse("core:\n  api_gateway:\n    plugins:\n      sub: {}\n      other: {}\n")); err != nil {
		t.Fatal(err)
	}
	sub := live.Load()
	<-sub.started
	if err := m.Reload(context.Background(), parse("core:\n  api_gateway:\n    plugins:\n      sub: {setting: x}\n      other: {}\n")); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Setting string `yaml:"setting"`
	}
	if err := sub.host.Section().Decode(&got); err != nil || got.Setting != "x" {
		t.Errorf("Host.Section after a reload = %+v, %v; want setting x", got, err)
	}
	if err := m.Disable(context.Background(), "sub"); err != nil {
		t.Fatal(err)
	}
	before := sub.seen.Load()
	if before == 0 {
		t.Fatal("the subscription saw no event while sub ran")
	}
	if err := m.Disable(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	if after := sub.seen.Load(); after != before {
		t.Errorf("sub saw %d events after it stopped", after-before)
	}
}
