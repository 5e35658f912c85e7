// Package labelpair keeps one Prometheus label pair for each name and
// value, for the series that share it: a series' labels are pointers to
// pairs, so every series of a probe, a state or a kind points at one.
package labelpair

import (
	"sync"

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
