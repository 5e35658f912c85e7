package e2etest

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is a /metrics body in the Prometheus text format, parsed by
// expfmt as Prometheus parses it: its families by name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics parses body, failing the test if it is not valid text
// exposition.
func ParseMetrics(t testing.TB, body []byte) Metrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return Metrics(fams)
}

// Series returns the series of the family name whose labels include
// every name, value pair of labels ("reason", "envelope", ...).
func (m Metrics) Series(name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
	for _, s := range m[name].GetMetric() {
		if hasLabels(s, labels) {
			out = append(out, s)
		}
	}
	return out
}

// Value returns the value of the one series of name with labels, and
// whether there is exactly one.
func (m Metrics) Value(name string, labels ...string) (float64, bool) {
	s := m.Series(name, labels...)
	if len(s) != 1 {
		return 0, false
	}
	return Value(s[0]), true
}

// Value is a counter's, gauge's or untyped series' value.
func Value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	return s.GetUntyped().GetValue()
}

func hasLabels(s *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
