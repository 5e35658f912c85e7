// Package labelpair keeps one Prometheus label pair for each name and
// value, for the series that share it: a series' labels are pointers to
// pairs, so every series of a probe, a state or a kind points at one.
package labelpair

import (
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
)

var pairs sync.Map // key -> *dto.LabelPair

type key struct{ name, value string }

// Shared is the one label pair name=value shared by every series that has
// it, so pairs can be compared by pointer. Only labels of bounded values
// (probes, results, classes, states, kinds, sources, capabilities) go
// through it: a pair is kept for good.
func Shared(name, value string) *dto.LabelPair {
	if p, ok := pairs.Load(key{name, value}); ok {
		return p.(*dto.LabelPair)
	}
	// A key of its own for the pair to point into: pointing into the
	// lookup's key would move that to the heap at every call, the calls
	// that find the pair too.
	k := &key{name, value}
	p, _ := pairs.LoadOrStore(*k, &dto.LabelPair{Name: &k.name, Value: &k.value})
	return p.(*dto.LabelPair)
}

// SortSeries orders the series of one family as client_golang's registry
// does: fewer labels first, then by their label values in the order of
// their labels. Series already in that order are left as they are.
func SortSeries(ms []*dto.Metric) {
	if !sort.IsSorted(series(ms)) {
		sort.Sort(series(ms))
	}
}

type series []*dto.Metric

func (s series) Len() int           { return len(s) }
func (s series) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s series) Less(i, j int) bool { return Compare(s[i].Label, s[j].Label) < 0 }

// Compare orders two series' label pairs, of one family, as a registry
// sorts its series: fewer pairs first, then by their values in order.
func Compare(a, b []*dto.LabelPair) int {
	if c := len(a) - len(b); c != 0 {
		return c
	}
	for i := range a {
		if c := strings.Compare(a[i].GetValue(), b[i].GetValue()); c != 0 {
			return c
		}
	}
	return 0
}

// Valid reports whether every value of ls is UTF-8, as a registry requires
// of a series it gathers.
func Valid(ls []*dto.LabelPair) bool {
	for _, l := range ls {
		if !utf8.ValidString(l.GetValue()) {
			return false
		}
	}
	return true
}
