package agent_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

// The contract holds when a step overruns its bound and ignores its
// context: the host never runs a second step of that plugin while the
// first one still runs. It waits for the late step within the next step's
// bound, or gives the plugin up (failed, abandoned) and never steps it
// again; shutdown stays within its budget and names what it left running.

// timeouts parses a config enabling plugins with the given step and stop
// bounds; a plugin is a name or "name: {section}".
func (r *rig) timeouts(t *testing.T, step, stop string, plugins ...string) *agent.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "core:\n  lifecycle:\n    step_timeout: %s\n    stop_timeout: %s\n  api_gateway:\n    plugins:\n", step, stop)
	for _, p := range plugins {
		if !strings.Contains(p, ":") {
			p += ": {}"
		}
		fmt.Fprintf(&b, "      %s\n", p)
	}
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(b.String()), r.reg, nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg
}

// within runs fn and fails the test if it does not return within bound.
func within(t *testing.T, bound time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		t.Fatalf("%s did not return within %s", what, bound)
		return nil
	}
}

func TestStopWaitsForATimedOutStart(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"stuck": {Faults: map[string]agenttest.Fault{"start": agenttest.Stuck}},
	})
	if err := r.m.Start(context.Background(), r.timeouts(t, "100ms", "1m", "stuck")); err != nil {
		t.Fatal(err)
	}
	p := r.fleet.Latest("stuck")
	if st, reason := r.state("stuck"); st != agent.StateFailed || !strings.Contains(reason, "timed out after 100ms") {
		t.Fatalf("stuck = %s %q, want failed: timed out", st, reason)
	}
	// Stop is due while Start still runs: it must wait for Start, not
	// run beside it. Once the host says it waits, releasing Start lets
	// both finish.
	waiting := make(chan agent.Event, 1)
	defer r.m.Events().Subscribe(func(ev agent.Event) {
		if ev.Plugin == "stuck" && ev.To == agent.StateStopping && strings.Contains(ev.Error, "waiting up to 1m0s for its start") {
			select {
			case waiting <- ev:
			default:
			}
		}
	})()
	stopped := make(chan error, 1)
	go func() { stopped <- r.m.Stop(context.Background()) }()
	select {
	case <-waiting:
	case err := <-stopped:
		t.Fatalf("Stop returned %v without waiting for the late Start; journal %v", err, r.fleet.Journal.Entries())
	case <-time.After(30 * time.Second):
		t.Fatalf("the host did not say it waits for the late Start; journal %v", r.fleet.Journal.Entries())
	}
	if st, reason := r.state("stuck"); st != agent.StateStopping || !strings.Contains(reason, "waiting") {
		t.Errorf("stuck = %s %q while Stop waits, want stopping, waiting", st, reason)
	}
	p.Release()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop = %v, want nil once the late Start returned", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return after the late Start was released")
	}
	if n := p.Overlaps(); n != 0 {
		t.Errorf("%d steps of stuck overlapped; journal %v", n, r.fleet.Journal.Entries())
	}
	if got := r.fleet.Journal.Entries(); !slices.Equal(got, []string{"initialize:stuck", "start:stuck", "stop:stuck"}) {
		t.Errorf("journal = %v, want Stop after the late Start", got)
	}
	if st, _ := r.state("stuck"); st != agent.StateStopped {
		t.Errorf("stuck = %s after Stop, want stopped", st)
	}
}

func TestStuckStartIsAbandonedAndShutdownIsBounded(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"base":  {Priority: agent.PriorityInfrastructure},
		"stuck": {Priority: agent.PriorityBusiness, Faults: map[string]agenttest.Fault{"start": agenttest.Stuck}},
	})
	cfg := r.timeouts(t, "100ms", "200ms", "base", "stuck")
	if err := r.m.Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p := r.fleet.Latest("stuck")
	defer p.Release()

	// The agent's own shutdown budget: stop_timeout per plugin, plus one.
	err := within(t, 10*time.Second, "Stop", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*200*time.Millisecond)
		defer cancel()
		return r.m.Stop(ctx)
	})
	if !errors.Is(err, agent.ErrAbandoned) || !strings.Contains(err.Error(), "left running: stuck (its start still runs)") {
		t.Errorf("Stop = %v, want it to name stuck as left running", err)
	}
	if n := p.Overlaps(); n != 0 {
		t.Errorf("%d steps of stuck overlapped; journal %v", n, r.fleet.Journal.Entries())
	}
	if slices.Contains(r.fleet.Journal.Steps("stop"), "stuck") {
		t.Error("Stop was called on stuck while its Start still ran")
	}
	if !slices.Contains(r.fleet.Journal.Steps("stop"), "base") {
		t.Error("base was not stopped")
	}
	st, _ := r.m.Plugin(context.Background(), "stuck")
	if st.State != agent.StateFailed || !st.Abandoned || !strings.Contains(st.LastError, "abandoned: stop of \"stuck\" not run: its start, which timed out, still runs") {
		t.Errorf("stuck = %s abandoned=%v %q, want failed, abandoned", st.State, st.Abandoned, st.LastError)
	}
	if st.Health == nil || st.Health.Status != agent.HealthFailing {
		t.Errorf("health of an abandoned plugin = %+v, want failing", st.Health)
	}
	if got := testutil.ToFloat64(mustVec(t, r.metrics, "vitals_plugin_abandoned", map[string]string{"plugin": "stuck"})); got != 1 {
		t.Errorf("vitals_plugin_abandoned{stuck} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(mustVec(t, r.metrics, "vitals_plugin_lifecycle_steps_total", map[string]string{"plugin": "stuck", "step": "stop", "outcome": "abandoned"})); got != 1 {
		t.Errorf("steps_total{stuck,stop,abandoned} = %v, want 1", got)
	}
}

func TestStuckReloadIsAbandonedAndNeverSteppedAgain(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"stuck": {Faults: map[string]agenttest.Fault{"reload": agenttest.Stuck}},
		"other": {},
	})
	if err := r.m.Start(context.Background(), r.timeouts(t, "100ms", "200ms", "stuck", "other")); err != nil {
		t.Fatal(err)
	}
	p := r.fleet.Latest("stuck")
	defer p.Release()
	reload := func(setting string) error {
		t.Helper()
		cfg := r.timeouts(t, "100ms", "200ms", "stuck: {setting: "+setting+"}", "other")
		return within(t, 10*time.Second, "Reload", func() error { return r.m.Reload(context.Background(), cfg) })
	}

	// The first Reload times out and keeps running; the plugin still runs
	// its old section.
	if err := reload("one"); !errors.Is(err, agent.ErrStepTimeout) {
		t.Fatalf("first Reload = %v, want a timeout", err)
	}
	// The second is due while the first still runs: the host waits one
	// step_timeout for it, then gives the plugin up.
	if err := reload("two"); !errors.Is(err, agent.ErrAbandoned) {
		t.Fatalf("second Reload = %v, want the plugin abandoned", err)
	}
	// A third, and Enable, leave it alone: no step, no new instance.
	if err := reload("three"); !errors.Is(err, agent.ErrAbandoned) {
		t.Errorf("third Reload = %v, want it to say stuck is abandoned", err)
	}
	if err := r.m.Enable(context.Background(), "stuck"); !errors.Is(err, agent.ErrAbandoned) {
		t.Errorf("Enable = %v, want it to say stuck is abandoned", err)
	}
	if got := r.fleet.Journal.Steps("initialize"); len(got) != 2 {
		t.Errorf("initialized %v, want no new stuck beside the abandoned one", got)
	}
	if got := r.fleet.Journal.Steps("reload"); !slices.Equal(got, []string{"stuck"}) {
		t.Errorf("reloads = %v, want only the first", got)
	}

	var found bool
	for _, c := range r.m.Readiness() {
		if c.Name == "plugin:stuck" {
			found = true
			if c.Err == nil || !strings.Contains(c.Err.Error(), "failed: abandoned: reload of \"stuck\" not run: its reload, which timed out, still runs") {
				t.Errorf("readiness of stuck = %v, want failed: abandoned", c.Err)
			}
		}
	}
	if !found {
		t.Error("readiness has no check for stuck")
	}

	err := within(t, 10*time.Second, "Stop", func() error { return r.m.Stop(context.Background()) })
	if !errors.Is(err, agent.ErrAbandoned) || !strings.Contains(err.Error(), "left running: stuck (its reload still runs)") {
		t.Errorf("Stop = %v, want it to name stuck as left running", err)
	}
	if slices.Contains(r.fleet.Journal.Steps("stop"), "stuck") {
		t.Error("an abandoned plugin was stopped")
	}
	if !slices.Contains(r.fleet.Journal.Steps("stop"), "other") {
		t.Error("other was not stopped")
	}
	if n := p.Overlaps(); n != 0 {
		t.Errorf("%d steps of stuck overlapped; journal %v", n, r.fleet.Journal.Entries())
	}
}

// Over HTTP: the admin API, /readyz and /metrics say a plugin is
// abandoned, and the agent's shutdown names it.
func TestAbandonedPluginOverHTTP(t *testing.T) {
	l := startLive(t, false, basePlugins+"      extra:\n        enabled: false\n")
	l.fleet.SetFaults("extra", map[string]agenttest.Fault{"start": agenttest.Stuck})
	if code, body := l.do("POST", "/api/v1/admin/plugins/extra/enable"); code != 500 {
		t.Fatalf("enabling a plugin whose start hangs: %d %v, want 500", code, body)
	}
	p := l.fleet.Latest("extra")
	defer p.Release()
	// A retry must stop the old value first; its Start still runs, so the
	// host waits stop_timeout for it and gives it up.
	if code, body := l.do("POST", "/api/v1/admin/plugins/extra/enable"); code != 500 || !strings.Contains(fmt.Sprint(body["error"]), "abandoned") {
		t.Fatalf("retrying it: %d %v, want 500 naming it abandoned", code, body)
	}
	code, body := l.do("GET", "/api/v1/admin/plugins/extra")
	if code != 200 || body["state"] != "failed" || body["abandoned"] != true || !strings.HasPrefix(fmt.Sprint(body["last_error"]), "abandoned: stop of \"extra\" not run") {
		t.Errorf("admin API: %d %v, want failed and abandoned", code, body)
	}
	if h, _ := body["health"].(map[string]any); h["status"] != "failing" {
		t.Errorf("health of an abandoned plugin: %v, want failing", body["health"])
	}
	if _, body := l.do("GET", "/readyz?full=1"); !strings.Contains(fmt.Sprint(body["plugin:extra"]), "failed: abandoned") {
		t.Errorf("readyz: %v, want plugin:extra failed: abandoned", body)
	}
	if _, body := l.do("GET", "/metrics"); !strings.Contains(body["text"].(string), `vitals_plugin_abandoned{plugin="extra"} 1`) {
		t.Error("/metrics lacks vitals_plugin_abandoned for extra")
	}
	if n := p.Overlaps(); n != 0 {
		t.Errorf("%d steps of extra overlapped; journal %v", n, l.fleet.Journal.Entries())
	}

	l.cancel()
	l.cancel = nil
	select {
	case err := <-l.done:
		if !errors.Is(err, agent.ErrAbandoned) || !strings.Contains(err.Error(), "left running: extra") {
			t.Errorf("agent Run = %v, want it to name extra as left running", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent's shutdown did not end within its budget")
	}
}
