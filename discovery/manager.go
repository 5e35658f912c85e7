package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	promdisc "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
)

// Bounds of discovery.
const (
	// DefaultMaxTargets bounds the targets of one source after relabeling.
	// An update past it is refused, counted as a source error, and the
	// source keeps its last good targets.
	DefaultMaxTargets = 10_000
	// MaxHTTPSDBytes bounds one http_sd response, headers included; a
	// longer one fails the refresh.
	MaxHTTPSDBytes = 8 << 20
	// DefaultUpdateInterval is how long changes gather before the set of
	// targets is recomputed and handed on.
	DefaultUpdateInterval = time.Second
)

// Options are a Manager's fixed settings.
type Options struct {
	// Logger gets the sources' own log lines, with source=<name>.
	Logger *slog.Logger
	// Registerer gets the vitals_discovery_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnUpdate receives the whole set of targets this shard owns after
	// each change, sorted by id. It is called from one goroutine at a
	// time and must not call back into the Manager.
	OnUpdate func([]Target)
	// Check vets each target by the consumer's own rules (a valid id, a
	// known kind); a target it refuses is dropped as invalid.
	Check func(Target) error
	// UpdateInterval gathers changes; DefaultUpdateInterval when zero.
	UpdateInterval time.Duration
	// MaxTargets bounds each source; DefaultMaxTargets when zero.
	MaxTargets int
}

// Manager runs the discovery mechanisms of a Config with Prometheus' own
// discoverers, relabels what they find with Prometheus' relabeling,
// makes targets of it (the reserved labels set the fields), keeps this
// shard's part and hands the whole set to OnUpdate whenever it changes.
// A source that fails keeps its last good targets; its failures are
// counted in vitals_discovery_source_errors_total.
//
// ApplyConfig may be called before and while Run runs: a source whose
// config did not change keeps running and keeps its targets; relabel and
// shard changes apply to what the sources already found.
type Manager struct {
	opts    Options
	metrics *metrics
	log     *slog.Logger
	notify  chan struct{}

	mu      sync.Mutex
	runCtx  context.Context // the lifetime of Run; nil before it
	cfg     Config
	rules   []*relabel.Config
	shard   Shard
	order   []string // source names in config order
	sources map[string]*runner
	last    []Target // last handed to OnUpdate
	started bool     // OnUpdate was called at least once
}

// runner is one running discovery mechanism.
type runner struct {
	name   string
	cfg    promdisc.Config
	cancel context.CancelFunc
	done   chan struct{}

	// Guarded by Manager.mu.
	groups   map[string]*targetgroup.Group
	dirty    bool            // something changed since the last update
	changed  map[string]bool // the groups that did
	allDirty bool            // the rules changed: rebuild every group
	built    map[string]built
	out      []Target // relabeled targets of the last good update
	dropped  map[string]int
}

// NewManager returns a Manager with no sources.
func NewManager(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.UpdateInterval <= 0 {
		opts.UpdateInterval = DefaultUpdateInterval
	}
	if opts.MaxTargets <= 0 {
		opts.MaxTargets = DefaultMaxTargets
	}
	m := &Manager{opts: opts, metrics: newMetrics(), log: opts.Logger, notify: make(chan struct{}, 1),
		sources: map[string]*runner{}}
	if opts.Registerer != nil {
		if err := m.metrics.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("discovery metrics: %w", err)
		}
	}
	m.metrics.count.Set(1)
	return m, nil
}

// Unregister removes the Manager's metrics from its Registerer.
func (m *Manager) Unregister() {
	if m.opts.Registerer == nil {
		return
	}
	for _, c := range m.metrics.collectors() {
		m.opts.Registerer.Unregister(c)
	}
}

// ApplyConfig makes cfg and shard the Manager's config. cfg must have
// passed Validate.
func (m *Manager) ApplyConfig(cfg Config, shard Shard) error {
	var stop []*runner
	m.mu.Lock()
	newRules := !reflect.DeepEqual(m.rules, cfg.RelabelConfigs)
	m.cfg, m.rules, m.shard = cfg, cfg.RelabelConfigs, shard
	if shard.Enabled() {
		m.metrics.count.Set(float64(shard.Count))
		m.metrics.index.Set(float64(shard.Index))
	} else {
		m.metrics.count.Set(1)
		m.metrics.index.Set(0)
	}
	want := map[string]promdisc.Config{}
	m.order = m.order[:0]
	for _, s := range cfg.sources() {
		want[s.name] = s.cfg
		m.order = append(m.order, s.name)
	}
	for name, r := range m.sources {
		if c, ok := want[name]; !ok || !reflect.DeepEqual(c, r.cfg) {
			delete(m.sources, name)
			m.metrics.forget(name)
			stop = append(stop, r)
		}
	}
	var errs []error
	for _, name := range m.order {
		if r := m.sources[name]; r != nil {
			if newRules {
				r.dirty, r.allDirty = true, true
			}
			continue
		}
		r := &runner{name: name, cfg: want[name], groups: map[string]*targetgroup.Group{}, changed: map[string]bool{}, dirty: true}
		m.sources[name] = r
		m.metrics.errors.WithLabelValues(name)
		m.metrics.targets.WithLabelValues(name)
		if m.runCtx != nil {
			if err := m.start(m.runCtx, r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	m.mu.Unlock()
	for _, r := range stop {
		r.stop(m)
	}
	m.poke()
	return errors.Join(errs...)
}

// Run starts the sources and hands on their targets until ctx is done,
// then stops them and returns once they have stopped. Call it once.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	for _, name := range m.order {
		if r := m.sources[name]; r != nil && r.cancel == nil {
			if err := m.start(ctx, r); err != nil {
				m.log.Error("discovery source did not start", "source", name, "err", err)
			}
		}
	}
	m.mu.Unlock()
	m.poke()
	defer m.stopAll()
	timer := time.NewTimer(0)
	<-timer.C
	pending := false
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-m.notify:
			if !pending {
				pending = true
				timer.Reset(m.opts.UpdateInterval)
			}
		case <-timer.C:
			pending = false
			m.update()
		}
	}
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.sources))
	for _, r := range m.sources {
		rs = append(rs, r)
	}
	m.runCtx = nil
	m.mu.Unlock()
	for _, r := range rs {
		r.stop(m)
	}
	m.mu.Lock()
	for _, r := range rs {
		r.cancel = nil
	}
	m.mu.Unlock()
}

func (m *Manager) poke() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// ShardSource is the source label of the Manager's own targets in
// vitals_discovery_shard_targets.
const ShardSource = "discovery"

// ObserveShard records, in vitals_discovery_shard_targets, how many
// targets of a source sharded elsewhere (the extmanager's config
// targets, its manifests) this agent sees and owns.
func (m *Manager) ObserveShard(source string, seen, owned int) {
	m.metrics.shard.WithLabelValues(source, "seen").Set(float64(seen))
	m.metrics.shard.WithLabelValues(source, "owned").Set(float64(owned))
}

// Targets returns the targets this shard owns, as last handed on.
func (m *Manager) Targets() []Target {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.last)
}

// start runs r's discoverer. Called with m.mu held.
func (m *Manager) start(ctx context.Context, r *runner) error {
	log := slog.New(&countErrors{Handler: m.log.Handler(), inc: m.metrics.errors.WithLabelValues(r.name).Inc}).
		With("source", r.name)
	// Prometheus' own metrics of each mechanism are made but not
	// registered: the vitals_discovery_* metrics say what matters here.
	dm := r.cfg.NewDiscovererMetrics(prometheus.NewRegistry(), noRefreshMetrics{})
	opts := promdisc.DiscovererOptions{Logger: log, Metrics: dm, SetName: r.name}
	if r.cfg.Name() == "http" {
		opts.HTTPClientOptions = []promconfig.HTTPClientOption{
			// One connection per refresh, so that the cap on what one
			// connection may read bounds each response.
			promconfig.WithKeepAlivesDisabled(),
			promconfig.WithDialContextFunc(cappedDial(MaxHTTPSDBytes)),
		}
	}
	if r.cfg.Name() == "kubernetes" {
		routeKlog(m, r)
	}
	d, err := r.cfg.NewDiscoverer(opts)
	if err != nil {
		m.metrics.errors.WithLabelValues(r.name).Inc()
		return fmt.Errorf("%s: %w", r.name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	ch := make(chan []*targetgroup.Group)
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx, ch) })
	go func() {
		defer close(r.done)
		defer wg.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case tgs, ok := <-ch:
				if !ok {
					return
				}
				m.merge(r, tgs)
			}
		}
	}()
	return nil
}

func (r *runner) stop(m *Manager) {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	if r.cfg.Name() == "kubernetes" {
		unrouteKlog(m, r)
	}
}

// merge keeps a source's update: each group replaces the group of its
// Source, and an empty group removes it, as in Prometheus' manager.
func (m *Manager) merge(r *runner, tgs []*targetgroup.Group) {
	m.mu.Lock()
	if m.sources[r.name] != r {
		m.mu.Unlock()
		return
	}
	for _, g := range tgs {
		if g == nil {
			continue
		}
		if len(g.Targets) == 0 {
			delete(r.groups, g.Source)
		} else {
			r.groups[g.Source] = g
		}
		r.changed[g.Source] = true
	}
	r.dirty = true
	m.mu.Unlock()
	m.poke()
}

// update recomputes the targets of the sources that changed and hands on
// the whole set if it changed.
func (m *Manager) update() {
	m.mu.Lock()
	for _, name := range m.order {
		r := m.sources[name]
		if r == nil || !r.dirty {
			continue
		}
		r.dirty = false
		out, dropped, errs := r.rebuild(m.rules, m.opts.Check)
		if len(errs) > 0 {
			m.log.Warn("discovered targets dropped", "source", name, "invalid", dropped[DropInvalid], "err", errors.Join(errs...))
		}
		if len(out) > m.opts.MaxTargets {
			m.metrics.errors.WithLabelValues(name).Inc()
			m.log.Error("discovery source refused: too many targets; keeping its last good targets",
				"source", name, "targets", len(out), "max", m.opts.MaxTargets)
			dropped[DropLimit] = len(out)
			r.dropped = dropped
			m.setDropped(name, dropped)
			continue
		}
		r.out, r.dropped = out, dropped
		m.metrics.targets.WithLabelValues(name).Set(float64(len(out)))
		m.setDropped(name, dropped)
	}
	seen := map[string]bool{}
	var all, owned []Target
	for _, name := range m.order {
		r := m.sources[name]
		if r == nil {
			continue
		}
		dup := 0
		for _, t := range r.out {
			if seen[t.ID] {
				dup++
				continue
			}
			seen[t.ID] = true
			all = append(all, t)
		}
		if dup > 0 {
			m.log.Warn("discovered targets dropped: their ids are taken by an earlier source or target", "source", name, "targets", dup)
		}
		m.metrics.dropped.WithLabelValues(name, DropDuplicate).Set(float64(dup))
	}
	for _, t := range all {
		if m.shard.Owns(t.ID) {
			owned = append(owned, t)
		}
	}
	slices.SortFunc(owned, func(a, b Target) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	m.ObserveShard(ShardSource, len(all), len(owned))
	changed := !m.started || !reflect.DeepEqual(owned, m.last)
	m.started = true
	if changed {
		m.last = owned
	}
	m.mu.Unlock()
	if changed && m.opts.OnUpdate != nil {
		m.opts.OnUpdate(slices.Clone(owned))
	}
}

func (m *Manager) setDropped(name string, dropped map[string]int) {
	for _, reason := range []string{DropRelabel, DropInvalid, DropLimit} {
		m.metrics.dropped.WithLabelValues(name, reason).Set(float64(dropped[reason]))
	}
}

// countErrors counts the error records of a source's logger: every
// Prometheus discoverer logs its failures (a refresh, a file read, a DNS
// name) at error level.
type countErrors struct {
	slog.Handler
	inc func()
}

func (h *countErrors) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.Handler.Enabled(ctx, l)
}

func (h *countErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.inc()
	}
	if h.Handler.Enabled(ctx, r.Level) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h *countErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return &countErrors{Handler: h.Handler.WithAttrs(as), inc: h.inc}
}

func (h *countErrors) WithGroup(g string) slog.Handler {
	return &countErrors{Handler: h.Handler.WithGroup(g), inc: h.inc}
}

// noRefreshMetrics hands the refresh package metrics that go nowhere:
// its failures are counted from the error records it logs.
type noRefreshMetrics struct{}

func (noRefreshMetrics) Instantiate(string, string) *promdisc.RefreshMetrics {
	return &promdisc.RefreshMetrics{
		Failures:          prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"}),
		Duration:          prometheus.NewSummary(prometheus.SummaryOpts{Name: "unused"}),
		DurationHistogram: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unused"}),
	}
}

// cappedDial dials TCP connections that fail a read past limit bytes.
func cappedDial(limit int64) promconfig.DialContextFunc {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cappedConn{Conn: c, left: limit}, nil
	}
}

type cappedConn struct {
	net.Conn
	left int64
}

func (c *cappedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("http_sd response longer than %d bytes", MaxHTTPSDBytes)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}
