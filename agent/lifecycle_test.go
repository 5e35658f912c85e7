package agent_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a manager over a fleet of fakes, with recorded spans and metrics.
type rig struct {
	fleet   *agenttest.Fleet
	reg     *agent.Registry
	m       *agent.Manager
	spans   *tracetest.SpanRecorder
	metrics *prometheus.Registry
}

func newRig(t *testing.T, specs map[string]agenttest.Spec) *rig {
	t.Helper()
	r := &rig{fleet: agenttest.NewFleet(specs), spans: tracetest.NewSpanRecorder(), metrics: prometheus.NewRegistry()}
	r.reg = r.fleet.Registry()
	hm, err := agent.NewHostMetrics(r.metrics)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.m = agent.NewManager(agent.ManagerOptions{Registry: r.reg, TracerProvider: tp, Metrics: hm})
	t.Cleanup(func() {
		r.fleet.ReleaseAll()
		_ = r.m.Stop(context.Background())
	})
	return r
}

// config builds a config enabling the named plugins; a name with a "!"
// suffix is required. extra is appended to the agent settings.
func (r *rig) config(t *testing.T, extra string, plugins ...string) *agent.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("core:\n  lifecycle:\n    step_timeout: 200ms\n    stop_timeout: 200ms\n" + extra + "  api_gateway:\n    plugins:\n")
	for _, p := range plugins {
		name, required := strings.CutSuffix(p, "!")
		fmt.Fprintf(&b, "      %s:\n        required: %v\n", name, required)
	}
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(b.String()), r.reg, nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg
}

func (r *rig) state(name string) (agent.State, string) {
	st, _ := r.m.Plugin(context.Background(), name)
	return st.State, st.LastError
}

func TestStartAndStopOrder(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"bus":     {Priority: agent.PriorityInfrastructure},
		"auth":    {Priority: agent.PrioritySecurity, Dependencies: []string{"catalog"}},
		"limits":  {Priority: agent.PriorityMiddleware},
		"catalog": {Priority: agent.PriorityBusiness, Provides: []string{"catalog_api"}},
		"manager": {Priority: agent.PriorityBusiness, Dependencies: []string{"catalog_api", "bus"}},
	})
	cfg := r.config(t, "", "bus", "auth", "limits", "catalog", "manager")
	if err := r.m.Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{"bus", "limits", "catalog", "auth", "manager"}
	if got := r.fleet.Journal.Steps("initialize"); !slices.Equal(got, want) {
		t.Errorf("initialize order = %v, want %v", got, want)
	}
	if got := r.fleet.Journal.Steps("start"); !slices.Equal(got, want) {
		t.Errorf("start order = %v, want %v", got, want)
	}
	if err := r.m.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
	if err := r.m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want)
	if got := r.fleet.Journal.Steps("stop"); !slices.Equal(got, want) {
		t.Errorf("stop order = %v, want %v", got, want)
	}
	for _, name := range want {
		if st, _ := r.state(name); st != agent.StateStopped {
			t.Errorf("%s is %s after Stop, want stopped", name, st)
		}
	}
	if err := r.m.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if n := len(r.fleet.Journal.Steps("stop")); n != len(want) {
		t.Errorf("second Stop stopped plugins again: %d stops", n)
	}
}

func TestStepFailures(t *testing.T) {
	for _, step := range []string{"initialize", "start"} {
		for _, fault := range []struct {
			name    string
			f       agenttest.Fault
			reason  string
			outcome string
		}{
			{"error", agenttest.Error, "injected failure", "error"},
			{"panic", agenttest.Panic, "panicked: flaky " + step + ": injected panic", "panic"},
			{"hang", agenttest.Hang, "timed out after 200ms", "timeout"},
		} {
			t.Run(step+" "+fault.name, func(t *testing.T) {
				r := newRig(t, map[string]agenttest.Spec{
					"base":      {Priority: agent.PriorityInfrastructure},
					"flaky":     {Priority: agent.PriorityMiddleware, Faults: map[string]agenttest.Fault{step: fault.f}},
					"dependent": {Priority: agent.PriorityBusiness, Dependencies: []string{"flaky"}},
					"other":     {Priority: agent.PriorityBusiness},
				})
				if err := r.m.Start(context.Background(), r.config(t, "", "base", "flaky", "dependent", "other")); err != nil {
					t.Fatalf("optional failure aborted startup: %v", err)
				}
				st, reason := r.state("flaky")
				if st != agent.StateFailed || !strings.Contains(reason, fault.reason) {
					t.Errorf("flaky = %s %q, want failed with %q", st, reason, fault.reason)
				}
				st, reason = r.state("dependent")
				if st != agent.StateFailed || reason != `skipped: dependency "flaky" is failed` {
					t.Errorf("dependent = %s %q, want skipped", st, reason)
				}
				if slices.Contains(r.fleet.Journal.Steps("initialize"), "dependent") && step == "initialize" {
					t.Error("dependent was initialized although its dependency failed")
				}
				for _, ok := range []string{"base", "other"} {
					if st, _ := r.state(ok); st != agent.StateRunning {
						t.Errorf("%s = %s, want running", ok, st)
					}
				}
				if got := testutil.ToFloat64(mustVec(t, r.metrics, "vitals_plugin_lifecycle_steps_total", map[string]string{"plugin": "flaky", "step": step, "outcome": fault.outcome})); got != 1 {
					t.Errorf("steps_total{flaky,%s,%s} = %v, want 1", step, fault.outcome, got)
				}
				if err := r.m.Ready(); err != nil {
					t.Errorf("Ready() under policy required = %v, want ready", err)
				}
				r.fleet.ReleaseAll()
				if err := r.m.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				// A plugin whose Start failed is stopped too; one whose
				// Initialize failed owes no Stop.
				stopped := r.fleet.Journal.Steps("stop")
				if step == "start" != slices.Contains(stopped, "flaky") {
					t.Errorf("stops = %v after a failed %s", stopped, step)
				}
			})
		}
	}
}

func TestStopFailuresAreJoined(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"a": {Priority: agent.PriorityInfrastructure, Faults: map[string]agenttest.Fault{"stop": agenttest.Error}},
		"b": {Priority: agent.PrioritySecurity, Faults: map[string]agenttest.Fault{"stop": agenttest.Panic}},
		"c": {Priority: agent.PriorityMiddleware, Faults: map[string]agenttest.Fault{"stop": agenttest.Hang}},
		"d": {Priority: agent.PriorityBusiness},
	})
	if err := r.m.Start(context.Background(), r.config(t, "", "a", "b", "c", "d")); err != nil {
		t.Fatal(err)
	}
	err := r.m.Stop(context.Background())
	if err == nil {
		t.Fatal("Stop succeeded despite three failing plugins")
	}
	for _, want := range []string{`stop "a": a stop: injected failure`, `stop "b": panicked`, `stop "c": stop of "c" timed out after 200ms`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Stop error %q lacks %q", err, want)
		}
	}
	if got := r.fleet.Journal.Steps("stop"); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
		t.Errorf("stop order = %v, want every plugin in reverse", got)
	}
	if !errors.Is(err, agent.ErrPanic) || !errors.Is(err, agent.ErrStepTimeout) {
		t.Errorf("joined error does not match ErrPanic and ErrStepTimeout: %v", err)
	}
}

func TestRequiredFailureAbortsStartup(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"bus":   {Priority: agent.PriorityInfrastructure},
		"auth":  {Priority: agent.PrioritySecurity},
		"vital": {Priority: agent.PriorityMiddleware, Faults: map[string]agenttest.Fault{"start": agenttest.Panic}},
		"late":  {Priority: agent.PriorityBusiness},
	})
	err := r.m.Start(context.Background(), r.config(t, "", "bus", "auth", "vital!", "late"))
	if err == nil || !strings.Contains(err.Error(), `required plugin "vital" failed to start: panicked`) {
		t.Fatalf("Start err = %v", err)
	}
	if got := r.fleet.Journal.Steps("start"); !slices.Equal(got, []string{"bus", "auth", "vital"}) {
		t.Errorf("starts = %v: nothing may start after the required failure", got)
	}
	// Everything initialized is stopped, in reverse.
	if got := r.fleet.Journal.Steps("stop"); !slices.Equal(got, []string{"late", "vital", "auth", "bus"}) {
		t.Errorf("stops = %v", got)
	}
	if err := r.m.Ready(); err == nil {
		t.Error("Ready() after aborted startup")
	}
}

func TestStartupInterrupted(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"a": {Priority: agent.PriorityInfrastructure},
		"b": {Priority: agent.PriorityBusiness},
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := r.m.Start(ctx, r.config(t, "", "a", "b"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with cancelled ctx = %v", err)
	}
	if got := r.fleet.Journal.Entries(); len(got) != 0 {
		t.Errorf("steps ran after cancellation: %v", got)
	}
}

func TestReadinessPolicyAll(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"a": {Priority: agent.PriorityInfrastructure, Faults: map[string]agenttest.Fault{"start": agenttest.Error}},
		"b": {Priority: agent.PriorityBusiness},
	})
	if err := r.m.Start(context.Background(), r.config(t, "    readiness: all\n", "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Ready(); err == nil || err.Error() != "plugin:a: failed: a start: injected failure" {
		t.Errorf("Ready() = %v, want a failed with its reason", err)
	}
}

func TestSpansAndEvents(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"good": {Priority: agent.PriorityInfrastructure},
		"bad":  {Priority: agent.PriorityBusiness, Faults: map[string]agenttest.Fault{"start": agenttest.Error}},
	})
	var events []agent.Event
	unsub := r.m.Events().Subscribe(func(e agent.Event) { events = append(events, e) })
	defer unsub()
	if err := r.m.Start(context.Background(), r.config(t, "", "good", "bad")); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	spans := r.spans.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	if len(byName["agent.startup"]) != 1 || len(byName["agent.shutdown"]) != 1 {
		t.Fatalf("root spans: %d startup, %d shutdown", len(byName["agent.startup"]), len(byName["agent.shutdown"]))
	}
	startup, shutdown := byName["agent.startup"][0], byName["agent.shutdown"][0]
	type key struct{ span, plugin string }
	seen := map[key]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if !strings.HasPrefix(s.Name(), "plugin.") {
			continue
		}
		attrs := attribute.NewSet(s.Attributes()...)
		name, _ := attrs.Value("vitals.plugin.name")
		seen[key{s.Name(), name.AsString()}] = s
		root := startup
		if s.Name() == "plugin.stop" {
			root = shutdown
		}
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("%s of %s is not a child of %s", s.Name(), name.AsString(), root.Name())
		}
		if _, ok := attrs.Value("vitals.plugin.priority"); !ok {
			t.Errorf("%s lacks vitals.plugin.priority", s.Name())
		}
	}
	for _, k := range []key{
		{"plugin.initialize", "good"}, {"plugin.start", "good"}, {"plugin.stop", "good"},
		{"plugin.initialize", "bad"}, {"plugin.start", "bad"}, {"plugin.stop", "bad"},
	} {
		if _, ok := seen[k]; !ok {
			t.Errorf("no %s span for %s", k.span, k.plugin)
		}
	}
	failed := seen[key{"plugin.start", "bad"}]
	if failed.Status().Code != codes.Error || len(failed.Events()) == 0 || failed.Events()[0].Name != "exception" {
		t.Errorf("failed start span: status %v, events %v; want error status and a recorded exception", failed.Status(), failed.Events())
	}
	fattrs := attribute.NewSet(failed.Attributes()...)
	if v, _ := fattrs.Value("vitals.plugin.outcome"); v.AsString() != "error" {
		t.Errorf("outcome = %q, want error", v.AsString())
	}

	var trail []string
	for _, e := range events {
		if e.Plugin == "bad" {
			trail = append(trail, string(e.To))
		}
	}
	if got := strings.Join(trail, ","); got != "initializing,initialized,starting,failed,stopping,stopped" {
		t.Errorf("bad's events = %s", got)
	}

	want := `
# HELP vitals_plugin_state Lifecycle state of each plugin: 1 for the state it is in, 0 for the others.
# TYPE vitals_plugin_state gauge
vitals_plugin_state{plugin="good",state="disabled"} 0
vitals_plugin_state{plugin="good",state="failed"} 0
vitals_plugin_state{plugin="good",state="initialized"} 0
vitals_plugin_state{plugin="good",state="initializing"} 0
vitals_plugin_state{plugin="good",state="registered"} 0
vitals_plugin_state{plugin="good",state="running"} 0
vitals_plugin_state{plugin="good",state="starting"} 0
vitals_plugin_state{plugin="good",state="stopped"} 1
vitals_plugin_state{plugin="good",state="stopping"} 0
`
	if err := testutil.CollectAndCompare(filtered(r.metrics, "good"), strings.NewReader(want), "vitals_plugin_state"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.metrics, "vitals_plugin_lifecycle_duration_seconds"); n != 6 {
		t.Errorf("lifecycle duration series = %d, want 6 (2 plugins × 3 steps)", n)
	}
}

// filtered gathers only the series of one plugin.
func filtered(g prometheus.Gatherer, plugin string) prometheus.Collector {
	return gathererCollector{g, plugin}
}

type gathererCollector struct {
	g      prometheus.Gatherer
	plugin string
}

func (gathererCollector) Describe(chan<- *prometheus.Desc) {}
func (c gathererCollector) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := c.g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "vitals_plugin_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] != c.plugin {
				continue
			}
			desc := prometheus.NewDesc(mf.GetName(), mf.GetHelp(), []string{"plugin", "state"}, nil)
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), labels["plugin"], labels["state"])
		}
	}
}

func mustVec(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := len(m.GetLabel()) == len(labels)
			for _, l := range m.GetLabel() {
				match = match && labels[l.GetName()] == l.GetValue()
			}
			if match {
				desc := prometheus.NewDesc(name, "x", nil, nil)
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue() // one of them is set
				return constCollector{prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, v)}
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

type constCollector struct{ m prometheus.Metric }

func (constCollector) Describe(chan<- *prometheus.Desc)      {}
func (c constCollector) Collect(ch chan<- prometheus.Metric) { ch <- c.m }

var _ = time.Second

func TestReloadRestartsDependentsOfRestartedPlugin(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"base":    {Priority: agent.PriorityInfrastructure, NoReload: true},
		"child":   {Priority: agent.PriorityBusiness, Dependencies: []string{"base"}},
		"bystand": {Priority: agent.PriorityBusiness},
	})
	if err := r.m.Start(context.Background(), r.config(t, "", "base", "child", "bystand")); err != nil {
		t.Fatal(err)
	}
	n := len(r.fleet.Journal.Entries())
	text := "core:\n  api_gateway:\n    plugins:\n      base:\n        setting: new\n      child: {}\n      bystand: {}\n"
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(text), r.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.m.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.fleet.Journal.Entries()[n:], " ")
	if want := "stop:child stop:base initialize:base initialize:child start:base start:child"; got != want {
		t.Errorf("steps = %q, want %q", got, want)
	}
}

// A plugin that uses a service only when one is configured (encrypt: auto)
// must tell a provider that failed to initialize from none: the lookup of
// a failed provider's declared service says it failed and why, and one
// that nobody declares is not found.
func TestFailedProviderServiceIsNotMissing(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"base":  {Priority: agent.PriorityInfrastructure},
		"vault": {Priority: agent.PriorityMiddleware, Provides: []string{"cipher"}, Faults: map[string]agenttest.Fault{"initialize": agenttest.Error}},
	})
	if err := r.m.Start(context.Background(), r.config(t, "", "base", "vault")); err != nil {
		t.Fatal(err)
	}
	c := r.m.Container()
	_, err := c.Get(context.Background(), "cipher")
	if err == nil || errors.Is(err, agent.ErrServiceNotFound) || !strings.Contains(err.Error(), `service is failed: plugin "vault"`) || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("cipher of a vault that failed to initialize: %v, want failed with the reason", err)
	}
	if _, err := c.Get(context.Background(), "nothing"); !errors.Is(err, agent.ErrServiceNotFound) {
		t.Errorf("an undeclared service: %v, want ErrServiceNotFound", err)
	}
}

// TestReadinessOutsideTheLock: a plugin whose Ready panics is reported not
// ready with the panic as its reason; one whose Ready blocks holds up only
// the readiness asked of it, not the manager.
func TestReadinessOutsideTheLock(t *testing.T) {
	r := newRig(t, map[string]agenttest.Spec{
		"a": {Priority: agent.PriorityInfrastructure},
		"p": {Priority: agent.PriorityMiddleware, Faults: map[string]agenttest.Fault{"ready": agenttest.Panic}},
		"s": {Priority: agent.PriorityBusiness, Faults: map[string]agenttest.Fault{"ready": agenttest.Stuck}},
	})
	if err := r.m.Start(context.Background(), r.config(t, "", "a", "p", "s")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		r.fleet.ReleaseAll()
		_ = r.m.Stop(context.Background())
	}()

	done := make(chan []agent.ReadinessCheck, 1)
	go func() { done <- r.m.Readiness() }()
	stuck := r.fleet.Latest("s")
	agenttest.Eventually(t, 10*time.Second, "s's Ready called", func() bool { return stuck.ReadyCalls() > 0 })
	order := make(chan []string, 1)
	go func() { order <- r.m.Order() }() // takes the manager's lock
	select {
	case got := <-order:
		if len(got) != 3 {
			t.Errorf("order %v while a Ready blocks", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the manager's lock is held while a plugin's Ready blocks")
	}
	select {
	case <-done:
		t.Fatal("Readiness returned while a plugin's Ready blocks")
	default:
	}
	r.fleet.ReleaseAll()
	checks := <-done
	byName := map[string]error{}
	for _, c := range checks {
		byName[c.Name] = c.Err
	}
	if err := byName["plugin:a"]; err != nil {
		t.Errorf("plugin:a: %v, want ready", err)
	}
	if err := byName["plugin:p"]; err == nil || !strings.Contains(err.Error(), "Ready panicked: p ready: injected panic") {
		t.Errorf("plugin:p: %v, want the panic as its reason", err)
	}
	if err := byName["plugin:s"]; err != nil {
		t.Errorf("plugin:s after release: %v, want ready", err)
	}
}
