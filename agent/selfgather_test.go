package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// selfGathered is a SelfGatherer: a vector gathered by a registry of its
// own, and how many times it was.
type selfGathered struct {
	*prometheus.GaugeVec
	gathers *int
}

func (s selfGathered) GatherSelf() ([]*dto.MetricFamily, error) {
	*s.gathers++
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.GaugeVec)
	return reg.Gather()
}

func gaugeVec(name string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name + "."}, []string{"plugin"})
	v.WithLabelValues("a").Set(1)
	v.WithLabelValues("b").Set(2)
	return v
}

// TestMetricsRegistry: a SelfGatherer's families come from GatherSelf,
// in the order of names among the registry's, as a registry holding
// everything gathers them; its names stay taken; unregistered, it is
// gone.
func TestMetricsRegistry(t *testing.T) {
	n := 0
	self := selfGathered{gaugeVec("m_self"), &n}
	others := []prometheus.Collector{gaugeVec("a_first"), gaugeVec("z_last")}
	r := NewMetricsRegistry(prometheus.NewRegistry())
	plain := prometheus.NewRegistry()
	for _, c := range append(others, self) {
		r.MustRegister(c)
		plain.MustRegister(c)
	}
	got, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d families, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("family %d:\n%v\nwant\n%v", i, got[i], want[i])
		}
	}
	// plain's gather collected self too, but through Collect.
	if n != 1 {
		t.Errorf("GatherSelf called %d times, want 1", n)
	}
	err = r.Register(gaugeVec("m_self"))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || are.ExistingCollector != prometheus.Collector(self) {
		t.Errorf("a collector of the same name: %v", err)
	}
	if !r.Unregister(self) {
		t.Fatal("not unregistered")
	}
	got, _ = r.Gather()
	if len(got) != 2 || n != 1 {
		t.Errorf("after Unregister: %d families, %d gathers", len(got), n)
	}
	if err := r.Register(self); err != nil {
		t.Errorf("registered again: %v", err)
	}
}

// TestMetricsRegistryTwice: a family gathered by two SelfGatherers (of
// distinct const labels, which a registry takes) is an error, as a
// registry's gather reports it, with the first family kept.
func TestMetricsRegistryTwice(t *testing.T) {
	n := 0
	r := NewMetricsRegistry(prometheus.NewRegistry())
	for i := range 2 {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dup", Help: "dup.", ConstLabels: prometheus.Labels{"i": fmt.Sprint(i)}}, []string{"plugin"})
		v.WithLabelValues("a").Set(float64(i))
		r.MustRegister(selfGathered{v, &n})
	}
	got, err := r.Gather()
	if err == nil || len(got) != 1 || got[0].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Errorf("families %v, error %v", got, err)
	}
}
