package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A SelfGatherer is a collector that also gathers its own families, as a
// registry holding it alone would gather them: its series consistent by
// construction (one a label set, valid label values, the registry's
// order), so that a scrape need not check each of them again. The health
// engine's series are.
type SelfGatherer interface {
	prometheus.Collector
	GatherSelf() ([]*dto.MetricFamily, error)
}

// SelfGathered finishes a GatherSelf: its families in the order of their
// names, as a registry returns them, and err with the series left out for
// a label value that is not UTF-8, named by their descs, as a registry
// refuses them.
func SelfGathered(fams []*dto.MetricFamily, invalid []string, err error) ([]*dto.MetricFamily, error) {
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	if invalid != nil {
		err = errors.Join(err, fmt.Errorf("%d series with a label value that is not UTF-8, not gathered: %s", len(invalid), strings.Join(invalid, ", ")))
	}
	return fams, err
}

// MetricsRegistry is the agent's /metrics registry: a prometheus.Registry,
// and beside it the SelfGatherers registered through it, whose descs the
// registry holds (so that a collector of the same names is refused as
// ever) but whose series Gather takes from GatherSelf rather than through
// the registry's checks of every series at every scrape.
type MetricsRegistry struct {
	reg *prometheus.Registry

	mu   sync.Mutex
	self []SelfGatherer // replaced, never changed in place
}

// NewMetricsRegistry is reg with SelfGatherers gathered beside it.
func NewMetricsRegistry(reg *prometheus.Registry) *MetricsRegistry {
	return &MetricsRegistry{reg: reg}
}

// described is a SelfGatherer as the registry holds it: its descs, and
// no series.
type described struct{ c prometheus.Collector }

func (d described) Describe(ch chan<- *prometheus.Desc) { d.c.Describe(ch) }
func (described) Collect(chan<- prometheus.Metric)      {}

// Register implements prometheus.Registerer.
func (r *MetricsRegistry) Register(c prometheus.Collector) error {
	s, ok := c.(SelfGatherer)
	if !ok {
		return unwrap(r.reg.Register(c))
	}
	if err := r.reg.Register(described{c}); err != nil {
		return unwrap(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self = append(slices.Clip(r.self), s)
	return nil
}

// unwrap is err with the SelfGatherer that the registry holds as
// described as the existing collector of an AlreadyRegisteredError.
func unwrap(err error) error {
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if d, ok := are.ExistingCollector.(described); ok {
			are.ExistingCollector = d.c
			return are
		}
	}
	return err
}

// MustRegister implements prometheus.Registerer.
func (r *MetricsRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (r *MetricsRegistry) Unregister(c prometheus.Collector) bool {
	s, ok := c.(SelfGatherer)
	if !ok {
		return r.reg.Unregister(c)
	}
	r.mu.Lock()
	r.self = slices.DeleteFunc(slices.Clone(r.self), func(x SelfGatherer) bool { return x == s })
	r.mu.Unlock()
	return r.reg.Unregister(described{c})
}

// Gather implements prometheus.Gatherer: the registry's families and the
// SelfGatherers', in the order of their names. A name gathered twice is
// an error, as a registry reports it, and its second family is left out.
func (r *MetricsRegistry) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := r.reg.Gather()
	r.mu.Lock()
	self := r.self
	r.mu.Unlock()
	if len(self) == 0 {
		return mfs, err
	}
	for _, s := range self {
		fs, e := s.GatherSelf()
		if e != nil {
			err = errors.Join(err, e)
		}
		mfs = append(mfs, fs...)
	}
	slices.SortStableFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	mfs = slices.CompactFunc(mfs, func(a, b *dto.MetricFamily) bool {
		if a.GetName() != b.GetName() {
			return false
		}
		err = errors.Join(err, fmt.Errorf("metric family %s gathered twice, by two collectors", a.GetName()))
		return true
	})
	return mfs, err
}

var (
	_ prometheus.Registerer = (*MetricsRegistry)(nil)
	_ prometheus.Gatherer   = (*MetricsRegistry)(nil)
)
