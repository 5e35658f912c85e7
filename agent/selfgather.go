package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
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
	var mfs []*dto.MetricFamily
	err := r.GatherEach(func(mf *dto.MetricFamily) error {
		mfs = append(mfs, mf)
		return nil
	})
	return mfs, err
}

// GatherEach is Gather one family at a time: it calls write with each
// family Gather returns, in the same order, and gathers a
// FamilyGatherer's families only as they are written, so that a scrape
// holds the family it is writing rather than all of them (at 1000
// targets every family of the health engine's together were 3 KiB a
// target, live for as long as the scrape took). It returns write's first
// error, at once, or else Gather's error.
func (r *MetricsRegistry) GatherEach(write func(*dto.MetricFamily) error) error {
	return r.each(func(f LazyFamily, g *gathering) error {
		mf := g.gather(f)
		if mf == nil {
			return nil
		}
		return write(mf)
	})
}

// writeText writes the families to e as GatherEach gathers them; those
// with a Text of their own append their series to e, making no messages.
func (r *MetricsRegistry) writeText(e *textEncoder) error {
	return r.each(func(f LazyFamily, g *gathering) error {
		if f.Text == nil || !model.LegacyValidation.IsValidMetricName(f.Name) {
			mf := g.gather(f)
			if mf == nil {
				return nil
			}
			if err := e.family(mf); err != nil {
				return &encodeError{err}
			}
			return nil
		}
		if f.Name == g.last {
			g.twice(f.Name)
			return nil
		}
		w := SeriesWriter{e: e, name: f.Name, help: f.Help, typ: f.Type}
		g.invalid = append(g.invalid, f.Text(&w)...)
		if w.err != nil {
			return &encodeError{w.err}
		}
		if w.started {
			g.last = f.Name
		}
		return nil
	})
}

// gathering is what each family of one gather adds to its outcome.
type gathering struct {
	err     error
	invalid []string
	last    string // the name of the family written last
}

// gather is f's family, nil when it has no series or when one of its
// name was written already.
func (g *gathering) gather(f LazyFamily) *dto.MetricFamily {
	mf, bad, err := f.Gather()
	g.invalid = append(g.invalid, bad...)
	g.err = errors.Join(g.err, err)
	if mf == nil || len(mf.Metric) == 0 {
		return nil
	}
	if mf.GetName() == g.last {
		g.twice(g.last)
		return nil
	}
	g.last = mf.GetName()
	return mf
}

func (g *gathering) twice(name string) {
	g.err = errors.Join(g.err, fmt.Errorf("metric family %s gathered twice, by two collectors", name))
}

// each calls visit with every family in the order of their names: the
// registry's, gathered at once, and the SelfGatherers', a
// FamilyGatherer's each as visit gathers it. It returns visit's first
// error, at once, or else the gather's.
func (r *MetricsRegistry) each(visit func(LazyFamily, *gathering) error) error {
	mfs, err := r.reg.Gather()
	r.mu.Lock()
	self := r.self
	r.mu.Unlock()
	fams := make([]LazyFamily, 0, len(mfs)+16*len(self))
	for _, mf := range mfs {
		fams = append(fams, Gathered(mf))
	}
	for _, s := range self {
		if fg, ok := s.(FamilyGatherer); ok {
			fs, e := fg.GatherFamilies()
			err = errors.Join(err, e)
			fams = append(fams, fs...)
			continue
		}
		fs, e := s.GatherSelf()
		err = errors.Join(err, e)
		for _, mf := range fs {
			fams = append(fams, Gathered(mf))
		}
	}
	// Stable: of two families of a name, the registry's is kept, then
	// the SelfGatherer's registered first.
	slices.SortStableFunc(fams, func(a, b LazyFamily) int { return strings.Compare(a.Name, b.Name) })
	g := gathering{err: err}
	for _, f := range fams {
		if err := visit(f, &g); err != nil {
			return err
		}
	}
	_, err = SelfGathered(nil, g.invalid, g.err)
	return err
}

// A LazyFamily is a family known by its name and gathered only when its
// Gather is called.
type LazyFamily struct {
	Name string
	// Gather gathers the family, nil or empty when it has no series, and
	// names by their descs the series left out for a label value that is
	// not UTF-8.
	Gather func() (mf *dto.MetricFamily, invalid []string, err error)
	// Text, when set, writes the family Gather would gather to a text
	// exposition without gathering it: the series that Gather would
	// return, in its order, each through w, and the same invalid. The
	// family's help and type are Help and Type; its name and its label
	// names are ones that need no escaping or quoting in any scheme.
	Text func(w *SeriesWriter) (invalid []string)
	Help string
	Type dto.MetricType
}

// Gathered is a family already gathered, as a LazyFamily.
func Gathered(mf *dto.MetricFamily) LazyFamily {
	return LazyFamily{Name: mf.GetName(), Gather: func() (*dto.MetricFamily, []string, error) { return mf, nil, nil }}
}

// A FamilyGatherer is a SelfGatherer that also lists its families to be
// gathered one at a time, each when it is written: the health engine's
// and the catalog's series, a dozen families of a series or more a
// target each.
type FamilyGatherer interface {
	SelfGatherer
	// GatherFamilies lists the families, each name at most once, in any
	// order, with the error of gathering those it gathered at once.
	GatherFamilies() ([]LazyFamily, error)
}

// GatherAll is GatherSelf of a FamilyGatherer: every family of fams
// gathered, as SelfGathered finishes them.
func GatherAll(fams []LazyFamily, err error) ([]*dto.MetricFamily, error) {
	out := make([]*dto.MetricFamily, 0, len(fams))
	g := gathering{err: err}
	for _, f := range fams {
		if mf := g.gather(f); mf != nil {
			out = append(out, mf)
		}
	}
	return SelfGathered(out, g.invalid, g.err)
}

var (
	_ prometheus.Registerer = (*MetricsRegistry)(nil)
	_ prometheus.Gatherer   = (*MetricsRegistry)(nil)
)
