package alertmanager

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/alerts"
)

// agentMetrics are the agent's series the rules read, in a real registry.
type agentMetrics struct {
	reg         *prometheus.Registry
	state       *prometheus.GaugeVec
	up          *prometheus.GaugeVec
	probes      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	pluginState *prometheus.GaugeVec
	reloadOK    prometheus.Gauge
}

func newAgentMetrics() *agentMetrics {
	m := &agentMetrics{
		reg:         prometheus.NewRegistry(),
		state:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_ai_plugin_health_state"}, []string{"plugin", "state"}),
		up:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_ai_plugin_up"}, []string{"plugin"}),
		probes:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_ai_probe_total"}, []string{"plugin", "probe", "result"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_ai_probe_errors_total"}, []string{"plugin", "class"}),
		pluginState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_plugin_state"}, []string{"plugin", "state"}),
		reloadOK:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "vitals_config_last_reload_successful"}),
	}
	m.reg.MustRegister(m.state, m.up, m.probes, m.errors, m.pluginState, m.reloadOK)
	m.reloadOK.Set(1)
	return m
}

func (m *agentMetrics) health(plugin, state string) {
	for _, s := range []string{"unknown", "healthy", "degraded", "unhealthy"} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.state.WithLabelValues(plugin, s).Set(v)
	}
}

// recorder keeps what the evaluator sent, per Eval.
type recorder struct{ sent [][]Alert }

func (r *recorder) last() []Alert {
	if len(r.sent) == 0 {
		return nil
	}
	return r.sent[len(r.sent)-1]
}

func newEvaluator(t *testing.T, m *agentMetrics, rec *recorder, instance string) *Evaluator {
	t.Helper()
	e, err := NewEvaluator(EvaluatorOptions{
		Gatherer: m.reg,
		Sender:   SenderFunc(func(a ...Alert) { rec.sent = append(rec.sent, a) }),
		Labels:   map[string]string{"job": "vitals", "instance": instance},
		Interval: 10 * time.Second, ResendInterval: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// step evaluates at t0+d and returns what was sent then (nil: nothing).
func step(e *Evaluator, rec *recorder, t0 time.Time, d time.Duration) []Alert {
	n := len(rec.sent)
	e.Eval(t0.Add(d))
	if len(rec.sent) == n {
		return nil
	}
	return rec.last()
}

func names(as []Alert) string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name()+"/"+a.Labels["plugin"])
	}
	return strings.Join(out, ",")
}

func TestFiringResendResolved(t *testing.T) {
	m, rec := newAgentMetrics(), &recorder{}
	e := newEvaluator(t, m, rec, "agent:9464")
	t0 := time.Unix(1_800_000_000, 0)
	m.health("llm", "healthy")
	if got := step(e, rec, t0, 0); got != nil {
		t.Fatalf("healthy: sent %v", got)
	}
	m.health("llm", "unhealthy")
	got := step(e, rec, t0, 10*time.Second)
	if len(got) != 1 || got[0].Name() != "VitalsAIPluginUnhealthy" {
		t.Fatalf("unhealthy: sent %v", got)
	}
	fired := got[0]
	if !fired.StartsAt.Equal(t0.Add(10*time.Second)) || !fired.EndsAt.Equal(t0.Add(10*time.Second+4*time.Minute)) {
		t.Errorf("startsAt %v endsAt %v: want the evaluation and 4 resend intervals after it", fired.StartsAt, fired.EndsAt)
	}
	if got := step(e, rec, t0, 20*time.Second); got != nil {
		t.Errorf("resent before the resend interval: %v", got)
	}
	got = step(e, rec, t0, 70*time.Second)
	if len(got) != 1 || !got[0].StartsAt.Equal(fired.StartsAt) || !got[0].EndsAt.Equal(t0.Add(70*time.Second+4*time.Minute)) {
		t.Errorf("resend: %+v", got)
	}
	m.health("llm", "healthy")
	got = step(e, rec, t0, 80*time.Second)
	if len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(80*time.Second)) || !got[0].StartsAt.Equal(fired.StartsAt) {
		t.Fatalf("resolved: %+v", got)
	}
	if got := step(e, rec, t0, 90*time.Second); got != nil {
		t.Errorf("resolved resent at once: %v", got)
	}
	if got := step(e, rec, t0, 140*time.Second); len(got) != 1 || !got[0].EndsAt.Equal(t0.Add(80*time.Second)) {
		t.Errorf("resolved not resent after the resend interval: %+v", got)
	}
	step(e, rec, t0, 80*time.Second+ResolvedRetention+time.Second)
	if got := step(e, rec, t0, 80*time.Second+ResolvedRetention+2*time.Minute); got != nil {
		t.Errorf("resolved resent past the retention: %v", got)
	}
	// It fails again: a new alert with a new start.
	m.health("llm", "unhealthy")
	got = step(e, rec, t0, time.Hour)
	if len(got) != 1 || !got[0].StartsAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("again: %+v", got)
	}
}

func TestForHoldsPending(t *testing.T) {
	m, rec := newAgentMetrics(), &recorder{}
	e := newEvaluator(t, m, rec, "a:9464")
	t0 := time.Unix(1_800_000_000, 0)
	m.pluginState.WithLabelValues("extmanager", "failed").Set(1)
	for _, d := range []time.Duration{0, 30 * time.Second, 50 * time.Second} {
		if got := step(e, rec, t0, d); got != nil {
			t.Fatalf("at %v (for: 1m): sent %v", d, got)
		}
	}
	if got := step(e, rec, t0, time.Minute); names(got) != "VitalsPluginFailed/extmanager" {
		t.Fatalf("at 1m: sent %v", got)
	}
	// Pending and cleared: nothing, not even resolved.
	m.pluginState.WithLabelValues("extmanager", "failed").Set(0)
	m.pluginState.WithLabelValues("routing", "failed").Set(1)
	got := step(e, rec, t0, 70*time.Second)
	if len(got) != 1 || !got[0].Resolved(t0.Add(70*time.Second)) {
		t.Fatalf("extmanager resolved: %+v", got)
	}
	m.pluginState.WithLabelValues("routing", "failed").Set(0)
	if got := step(e, rec, t0, 80*time.Second); got != nil {
		t.Errorf("a pending alert that cleared was sent: %v", got)
	}
}

func TestStuckAndLost(t *testing.T) {
	m, rec := newAgentMetrics(), &recorder{}
	e := newEvaluator(t, m, rec, "agent:9464")
	t0 := time.Unix(1_800_000_000, 0)
	var at time.Duration
	next := func() []Alert { at += 10 * time.Second; return step(e, rec, t0, at) }
	m.up.WithLabelValues("llm").Set(1)
	m.health("llm", "healthy")
	m.probes.WithLabelValues("llm", "synthetic", "success").Add(5)
	m.probes.WithLabelValues("llm", "synthetic", "failure").Add(2) // old failures, before the first evaluation
	step(e, rec, t0, 0)
	for range 6 { // a minute of successes
		m.probes.WithLabelValues("llm", "synthetic", "success").Inc()
		if got := next(); got != nil {
			t.Fatalf("healthy: sent %v", names(got))
		}
	}
	// Stuck: failures only.
	m.probes.WithLabelValues("llm", "synthetic", "failure").Inc()
	m.errors.WithLabelValues("llm", "stuck").Inc()
	if got := names(next()); got != "" {
		t.Fatalf("a success within the minute: sent %v", got)
	}
	for i := range 5 {
		m.probes.WithLabelValues("llm", "synthetic", "failure").Inc()
		m.errors.WithLabelValues("llm", "stuck").Inc()
		if i == 2 {
			m.health("llm", "unhealthy")
		}
		next()
	}
	if got := names(e.Active()); got != "VitalsAIPluginStuck/llm,VitalsAIPluginUnhealthy/llm" {
		t.Fatalf("stuck: active %v", got)
	}
	// The first good inference: stuck holds while the engine says unhealthy.
	m.probes.WithLabelValues("llm", "synthetic", "success").Inc()
	next()
	if got := names(e.Active()); got != "VitalsAIPluginStuck/llm,VitalsAIPluginUnhealthy/llm" {
		t.Fatalf("recovering: active %v", got)
	}
	m.health("llm", "healthy")
	next()
	if got := names(e.Active()); got != "" {
		t.Fatalf("recovered: active %v", got)
	}

	// Lost: a bus plugin born after the first evaluation, whose first
	// stale heartbeat counts (its counter started at 0).
	m.errors.WithLabelValues("gpu_probe", "stale").Inc()
	next()
	if got := names(e.Active()); got != "VitalsAIPluginLost/gpu_probe" {
		t.Fatalf("lost: active %v", got)
	}
	for range 12 { // two minutes without a new stale heartbeat
		next()
	}
	if got := names(e.Active()); got != "" {
		t.Fatalf("heartbeats back: active %v", got)
	}
}

// TestWindowKeepsWhatRulesRead checks the bound on the evaluator's memory:
// only the series of the metrics the rules read are kept, and a counter's
// history only as long as the longest window.
func TestWindowKeepsWhatRulesRead(t *testing.T) {
	m, rec := newAgentMetrics(), &recorder{}
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_bus_messages_total"}, []string{"topic"})
	m.reg.MustRegister(other)
	e := newEvaluator(t, m, rec, "a:9464")
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 100 {
		other.WithLabelValues(fmt.Sprint("topic", i)).Inc()
		m.errors.WithLabelValues("llm", "timeout").Inc()
		e.Eval(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	if _, ok := e.window.current["vitals_bus_messages_total"]; ok {
		t.Error("a metric no rule reads is kept")
	}
	if len(e.window.history) != 1 {
		t.Errorf("%d counter histories, want 1 (vitals_ai_probe_errors_total{plugin=llm,class=timeout})", len(e.window.history))
	}
	for k, h := range e.window.history {
		// 5m + 2 intervals of 10 s, one point per evaluation, and the
		// baseline before the window.
		if len(h) > 34 {
			t.Errorf("%q keeps %d points", k, len(h))
		}
	}
}

func TestConfigReloadFailed(t *testing.T) {
	m, rec := newAgentMetrics(), &recorder{}
	e := newEvaluator(t, m, rec, "a:9464")
	t0 := time.Unix(1_800_000_000, 0)
	m.reloadOK.Set(0)
	step(e, rec, t0, 0)
	if got := step(e, rec, t0, 5*time.Minute); names(got) != "VitalsConfigReloadFailed/" {
		t.Fatalf("sent %v", names(got))
	}
}

// TestAlertsMatchTheRules makes each pushed alert fire on the agent's
// metrics and compares its labels and annotations with those the promtool
// unit tests expect of Prometheus for the same alert (alerts/*_test.yml):
// one Alertmanager config serves both only if they are the same.
func TestAlertsMatchTheRules(t *testing.T) {
	files, err := filepath.Glob("../../alerts/*_test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests: %v", err)
	}
	type expAlert struct {
		Labels      map[string]string `yaml:"exp_labels"`
		Annotations map[string]string `yaml:"exp_annotations"`
	}
	expected := map[string][]expAlert{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string     `yaml:"alertname"`
					ExpAlerts []expAlert `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, art := range tc.AlertRuleTest {
				expected[art.Alertname] = append(expected[art.Alertname], art.ExpAlerts...)
			}
		}
	}
	// How to make each alert fire for plugin p on the agent's metrics.
	scenarios := map[string]func(m *agentMetrics, p string, i int){
		"VitalsAIPluginUnhealthy": func(m *agentMetrics, p string, i int) { m.health(p, "unhealthy") },
		"VitalsAIPluginStuck": func(m *agentMetrics, p string, i int) {
			m.up.WithLabelValues(p).Set(1)
			m.probes.WithLabelValues(p, "synthetic", "success")
			if i > 0 {
				m.probes.WithLabelValues(p, "synthetic", "failure").Inc()
			}
		},
		"VitalsAIPluginLost": func(m *agentMetrics, p string, i int) {
			if i > 0 {
				m.errors.WithLabelValues(p, "stale").Inc()
			}
		},
		"VitalsPluginFailed":       func(m *agentMetrics, p string, i int) { m.pluginState.WithLabelValues(p, "failed").Set(1) },
		"VitalsConfigReloadFailed": func(m *agentMetrics, p string, i int) { m.reloadOK.Set(0) },
	}
	for _, r := range Rules {
		t.Run(r.Alert, func(t *testing.T) {
			exps := expected[r.Alert]
			if len(exps) == 0 {
				t.Fatalf("no promtool test expects %s to fire", r.Alert)
			}
			scenario := scenarios[r.Alert]
			if scenario == nil {
				t.Fatalf("no scenario for %s", r.Alert)
			}
			for _, exp := range exps {
				m, rec := newAgentMetrics(), &recorder{}
				e := newEvaluator(t, m, rec, exp.Labels["instance"])
				e.o.Labels["job"] = exp.Labels["job"]
				t0 := time.Unix(1_800_000_000, 0)
				var fired *Alert
				for i := 0; i < 60 && fired == nil; i++ {
					scenario(m, exp.Labels["plugin"], i)
					for _, a := range step(e, rec, t0, time.Duration(i)*10*time.Second) {
						if a.Name() == r.Alert {
							fired = &a
						}
					}
				}
				if fired == nil {
					t.Fatalf("%s did not fire in 10 minutes of its scenario", r.Alert)
				}
				want := maps.Clone(exp.Labels)
				want["alertname"] = r.Alert
				if !maps.Equal(fired.Labels, want) {
					t.Errorf("labels\n got %v\nwant %v", sorted(fired.Labels), sorted(want))
				}
				if !maps.Equal(fired.Annotations, exp.Annotations) {
					t.Errorf("annotations\n got %v\nwant %v", sorted(fired.Annotations), sorted(exp.Annotations))
				}
			}
		})
	}
}

func sorted(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// TestRulesAreTheFilesExpressions pins the expression of each pushed alert
// in vitals.rules.yml (whitespace aside) to the one its Go condition in
// rules.go implements: a changed expression fails here until the condition
// is changed with it, so the push and Prometheus keep alerting alike.
func TestRulesAreTheFilesExpressions(t *testing.T) {
	implemented := map[string]string{
		"VitalsAIPluginUnhealthy": `vitals_ai_plugin_health_state{state="unhealthy"} == 1`,
		"VitalsAIPluginStuck": `( ( sum by (job, instance, plugin) (increase(vitals_ai_probe_total{probe="synthetic", result="failure"}[1m])) > 0` +
			` unless on (job, instance, plugin) sum by (job, instance, plugin) (increase(vitals_ai_probe_total{probe="synthetic", result=~"success|passive"}[1m])) > 0 )` +
			` and on (job, instance, plugin) vitals_ai_plugin_up == 1 )` +
			` or ( max by (job, instance, plugin) (vitals_ai_plugin_health_state{state="unhealthy"}) == 1` +
			` and on (job, instance, plugin) sum by (job, instance, plugin) (increase(vitals_ai_probe_errors_total{class="stuck"}[5m])) > 0 )` +
			` or max by (job, instance, plugin) (vitals_ai_plugin_health_state{state="stuck"}) == 1`,
		"VitalsAIPluginLost":       `sum by (job, instance, plugin) (increase(vitals_ai_probe_errors_total{class="stale"}[2m])) > 0`,
		"VitalsPluginFailed":       `vitals_plugin_state{state="failed"} == 1`,
		"VitalsConfigReloadFailed": `vitals_config_last_reload_successful == 0`,
	}
	defs, err := alerts.Rules()
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{}
	for _, d := range defs {
		exprs[d.Alert] = strings.Join(strings.Fields(d.Expr), " ")
	}
	for _, r := range Rules {
		want, ok := implemented[r.Alert]
		if !ok {
			t.Errorf("%s is pushed, but this test does not say which expression its condition implements", r.Alert)
			continue
		}
		if got := exprs[r.Alert]; got != want {
			t.Errorf("%s: vitals.rules.yml has\n  %s\nthe pushed condition implements\n  %s\nchange rules.go with the rule, then this test", r.Alert, got, want)
		}
	}
}
