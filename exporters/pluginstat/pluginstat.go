package pluginstat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Counts is a goroutine census: per plugin label, and the rest.
type Counts struct {
	ByPlugin     map[string]int
	Unattributed int
}

// Census reads the goroutine profile and counts goroutines by their
// "plugin" pprof label.
func Census() Counts {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return parse(&buf)
}

// parse reads a debug=1 goroutine profile: "N @ pc..." opens a group of N
// goroutines, and an optional "# labels: {...}" line follows it.
func parse(b *bytes.Buffer) Counts {
	c := Counts{ByPlugin: map[string]int{}}
	sc := bufio.NewScanner(b)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	pending := 0 // count of the open group not yet attributed
	for sc.Scan() {
		line := sc.Text()
		if n, rest, ok := strings.Cut(line, " @ "); ok && rest != "" {
			c.Unattributed += pending
			pending, _ = strconv.Atoi(n)
			continue
		}
		if l, ok := strings.CutPrefix(line, "# labels: "); ok && pending > 0 {
			var labels map[string]string
			if json.Unmarshal([]byte(l), &labels) == nil && labels["plugin"] != "" {
				c.ByPlugin[labels["plugin"]] += pending
				pending = 0
			}
		}
	}
	c.Unattributed += pending
	return c
}

// Collector exports vitals_plugin_goroutines{plugin} and
// vitals_goroutines_unattributed. A census stops the world briefly, so
// one is taken at most every MinInterval however often Prometheus scrapes.
type Collector struct {
	MinInterval time.Duration

	perPlugin *prometheus.Desc
	rest      *prometheus.Desc
	dur       *prometheus.Desc

	mu    sync.Mutex
	last  Counts
	at    time.Time
	took  time.Duration
	now   func() time.Time
	count func() Counts
}

// NewCollector returns a collector with a 5 s minimum interval.
func NewCollector() *Collector {
	return &Collector{
		MinInterval: 5 * time.Second,
		perPlugin: prometheus.NewDesc("vitals_plugin_goroutines",
			"Goroutines started, directly or not, by an in-process plugin's lifecycle steps (pprof label plugin).",
			[]string{"plugin"}, nil),
		rest: prometheus.NewDesc("vitals_goroutines_unattributed",
			"Goroutines without a plugin label: the host's, the HTTP server's, the runtime's.", nil, nil),
		dur: prometheus.NewDesc("vitals_plugin_goroutine_census_duration_seconds",
			"How long the last goroutine census took.", nil, nil),
		now:   time.Now,
		count: Census,
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.perPlugin
	ch <- c.rest
	ch <- c.dur
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.at.IsZero() || c.now().Sub(c.at) >= c.MinInterval {
		start := time.Now()
		c.last = c.count()
		c.took = time.Since(start)
		c.at = c.now()
	}
	last, took := c.last, c.took
	c.mu.Unlock()
	for p, n := range last.ByPlugin {
		ch <- prometheus.MustNewConstMetric(c.perPlugin, prometheus.GaugeValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(c.rest, prometheus.GaugeValue, float64(last.Unattributed))
	ch <- prometheus.MustNewConstMetric(c.dur, prometheus.GaugeValue, took.Seconds())
}

var _ prometheus.Collector = (*Collector)(nil)
