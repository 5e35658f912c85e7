package alertmanager

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEval is one evaluation of every rule on a registry with 100 AI
// plugins (each with its health, probe and error series) and 20 host
// plugins: a gather and the rules, without sending.
func BenchmarkEval(b *testing.B) {
	m := newAgentMetrics()
	for i := range 100 {
		p := fmt.Sprint("llm", i)
		m.health(p, "healthy")
		m.up.WithLabelValues(p).Set(1)
		for _, probe := range []string{"liveness", "readiness", "synthetic", "resources"} {
			m.probes.WithLabelValues(p, probe, "success").Add(100)
			m.probes.WithLabelValues(p, probe, "failure").Add(0)
		}
		m.errors.WithLabelValues(p, "timeout").Add(3)
	}
	for i := range 20 {
		for _, s := range []string{"created", "initialized", "running", "stopped", "failed"} {
			m.pluginState.WithLabelValues(fmt.Sprint("plugin", i), s).Set(0)
		}
	}
	e, err := NewEvaluator(EvaluatorOptions{Gatherer: m.reg, Sender: SenderFunc(func(...Alert) {}),
		Labels: map[string]string{"job": "vitals", "instance": "a:9464"}})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.probes.WithLabelValues("llm0", "synthetic", "success").Inc()
		e.Eval(t0.Add(time.Duration(i) * 10 * time.Second))
	}
}

// BenchmarkGather is the gather alone on the same registry, the part of
// an evaluation that a Prometheus scrape costs too.
func BenchmarkGather(b *testing.B) {
	m := newAgentMetrics()
	for i := range 100 {
		p := fmt.Sprint("llm", i)
		m.health(p, "healthy")
		m.up.WithLabelValues(p).Set(1)
		for _, probe := range []string{"liveness", "readiness", "synthetic", "resources"} {
			m.probes.WithLabelValues(p, probe, "success").Add(100)
			m.probes.WithLabelValues(p, probe, "failure").Add(0)
		}
		m.errors.WithLabelValues(p, "timeout").Add(3)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
