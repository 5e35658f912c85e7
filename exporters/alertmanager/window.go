package alertmanager

import (
	"maps"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Sample is one series a rule's condition holds for: its labels (beyond
// the agent's job and instance) and value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Window is what a rule's condition reads: the agent's metrics as the last
// gather found them, and the recent history of the counters it tracks.
type Window struct {
	now     time.Time
	current map[string][]series // by metric name
	// history of counter series by key, oldest first; each one started
	// at its first evaluation, or at 0 when it appeared after the first.
	history map[string][]point
	first   time.Time // the evaluator's first evaluation
	keep    time.Duration
	reads   map[string]bool // the metric names the rules read
}

type series struct {
	labels map[string]string
	value  float64
	key    string // of a counter: its history's key
}

type point struct {
	t time.Time
	v float64
}

func newWindow(keep time.Duration, reads map[string]bool) *Window {
	return &Window{current: map[string][]series{}, history: map[string][]point{}, keep: keep, reads: reads}
}

// update replaces the current values with a gather's and appends the
// counters to their history, dropping points older than keep (but the last
// point before that, the baseline of the longest window).
func (w *Window) update(now time.Time, families []*dto.MetricFamily, prev time.Time) {
	w.now = now
	if w.first.IsZero() {
		w.first = now
	}
	w.current = map[string][]series{}
	seen := map[string]bool{}
	for _, f := range families {
		if !w.reads[f.GetName()] {
			continue // bounded: nothing of what the rules do not read is kept
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue // histograms and summaries: no rule reads them
			}
			if f.GetType() != dto.MetricType_COUNTER {
				w.current[f.GetName()] = append(w.current[f.GetName()], series{labels: labels, value: v})
				continue
			}
			k := f.GetName() + "\xfe" + key(labels)
			w.current[f.GetName()] = append(w.current[f.GetName()], series{labels: labels, value: v, key: k})
			seen[k] = true
			h := w.history[k]
			if len(h) == 0 && now.After(w.first) && !prev.IsZero() {
				// Born since the last evaluation: the agent's counters
				// start at 0 with their series.
				h = append(h, point{t: prev, v: 0})
			}
			w.history[k] = trim(append(h, point{t: now, v: v}), now.Add(-w.keep))
		}
	}
	for k := range w.history {
		if !seen[k] {
			delete(w.history, k) // the series is gone (its plugin left)
		}
	}
}

// trim drops points before cut, but keeps the last one at or before it.
func trim(h []point, cut time.Time) []point {
	i := 0
	for i+1 < len(h) && !h[i+1].t.After(cut) {
		i++
	}
	return h[i:]
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Gauge returns the current series of name whose labels match.
func (w *Window) Gauge(name string, match map[string]string) []Sample {
	var out []Sample
	for _, s := range w.current[name] {
		if matches(s.labels, match) {
			out = append(out, Sample{Labels: maps.Clone(s.labels), Value: s.value})
		}
	}
	return out
}

// Increase returns, per value of the label by, the sum over the matching
// counter series of how much each grew within the last d: from the last
// point at or before now-d (or the first point) to now, a drop counting as
// a reset to 0, like PromQL's increase() without its extrapolation.
func (w *Window) Increase(name string, match map[string]string, d time.Duration, by string) map[string]float64 {
	out := map[string]float64{}
	cut := w.now.Add(-d)
	for _, s := range w.current[name] {
		if !matches(s.labels, match) {
			continue
		}
		h := trim(w.history[s.key], cut)
		inc := 0.0
		for i := 1; i < len(h); i++ {
			if dv := h[i].v - h[i-1].v; dv >= 0 {
				inc += dv
			} else {
				inc += h[i].v
			}
		}
		out[s.labels[by]] += inc
	}
	return out
}
