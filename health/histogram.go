package health

import (
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/internal/labelpair"
)

// Native histogram settings of the latency histograms: buckets at most
// 10 % wide (schema 3: a factor of 2^(1/8), 1.09, between bounds), at
// most nativeMaxBuckets of them per series (past that each two merge into
// one, so a series of a server whose latency ranges widely stays small,
// and after nativeResetAfter the histogram starts over at full
// resolution instead), and one exemplar, the latest check's trace. These
// are client_golang's rules for a histogram with
// NativeHistogramBucketFactor 1.1, NativeHistogramMaxBucketNumber 20 and
// NativeHistogramMinResetDuration 1h.
const (
	nativeSchema     = 3
	nativeMaxBuckets = 20
	nativeResetAfter = time.Hour
	// nativeZeroThreshold is client_golang's default: an observation at
	// or below it counts in the zero bucket.
	nativeZeroThreshold = 2.938735877055719e-39
	// nativeMinSchema is the coarsest schema Prometheus reads.
	nativeMinSchema = -4
)

// nativeBounds are, for schemas 1 to 3, the fractions (as math.Frexp
// returns them) at which a bucket ends: 2^(i/2^schema) / 2.
var nativeBounds = [...][]float64{
	1: {0.5, 0.7071067811865475},
	2: {0.5, 0.5946035575013605, 0.7071067811865475, 0.8408964152537144},
	3: {0.5, 0.5452538663326288, 0.5946035575013605, 0.6484197773255048,
		0.7071067811865475, 0.7711054127039704, 0.8408964152537144, 0.9170040432046711},
}

// nativeKey is the index of the bucket of v (> 0, finite) at schema: the
// bucket i holds (2^((i-1)/2^schema), 2^(i/2^schema)], as Prometheus
// defines them.
func nativeKey(v float64, schema int8) int32 {
	frac, exp := math.Frexp(v)
	if schema > 0 {
		b := nativeBounds[schema]
		return int32(sort.SearchFloat64s(b, frac) + (exp-1)*len(b))
	}
	key := exp
	if frac == 0.5 {
		key--
	}
	return int32((key + (1 << -schema) - 1) >> -schema)
}

// latency is one plugin's histogram of one duration: a native histogram
// whose populated buckets are kept in a fixed array, in the order of
// their keys (no map per bucket, as client_golang keeps), with classic
// buckets besides when metrics.classic_buckets lists any. Observe and
// Write may run at once; mu orders them.
type latency struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	bounds []float64 // the classic buckets' upper bounds; nil for none
	// invalid is set when a label value is not UTF-8.
	invalid bool

	mu      sync.Mutex
	count   uint64
	sum     float64
	zero    uint64 // observations at or below nativeZeroThreshold
	schema  int8
	n       uint8 // populated buckets: keys[:n], counts[:n]
	keys    [nativeMaxBuckets]int32
	counts  [nativeMaxBuckets]uint64
	classic []uint64 // per classic bucket, not cumulative; the last is +Inf
	created time.Time
	ex      exemplar // the latest observation's, if ok
}

func newLatency(desc *prometheus.Desc, labels []*dto.LabelPair, bounds []float64, now time.Time) *latency {
	h := &latency{desc: desc, labels: labels, bounds: bounds, schema: nativeSchema, created: now, invalid: !labelpair.Valid(labels)}
	if len(bounds) > 0 {
		h.classic = make([]uint64, len(bounds)+1)
	}
	return h
}

// observe records v (seconds) at now, with ex as the exemplar when it is
// one (ok).
func (h *latency) observe(v float64, now time.Time, ex exemplar) {
	if math.IsNaN(v) || v < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ex.ok {
		h.ex = ex
	}
	// A histogram whose buckets were widened starts over at full
	// resolution once nativeResetAfter has passed since it began, as
	// client_golang's does: a reset that rate() and increase() handle
	// like any counter's.
	if h.schema < nativeSchema && now.Sub(h.created) >= nativeResetAfter {
		h.reset(now)
	}
	h.count++
	h.sum += v
	if h.classic != nil {
		h.classic[sort.SearchFloat64s(h.bounds, v)]++
	}
	if v <= nativeZeroThreshold || math.IsInf(v, 1) {
		// No duration is infinite; were one, it would count without a
		// bucket of its own.
		h.zero++
		return
	}
	key := nativeKey(v, h.schema)
	for {
		i, found := slices.BinarySearch(h.keys[:h.n], key)
		if found {
			h.counts[i]++
			return
		}
		if h.n < nativeMaxBuckets {
			copy(h.keys[i+1:h.n+1], h.keys[i:h.n])
			copy(h.counts[i+1:h.n+1], h.counts[i:h.n])
			h.keys[i], h.counts[i] = key, 1
			h.n++
			return
		}
		if now.Sub(h.created) >= nativeResetAfter || h.schema == nativeMinSchema {
			h.reset(now)
			h.count, h.sum = 1, v
			if h.classic != nil {
				h.classic[sort.SearchFloat64s(h.bounds, v)]++
			}
			key = nativeKey(v, h.schema)
			continue
		}
		h.halve()
		key = (key + 1) >> 1
	}
}

// halve merges each two neighbouring buckets into one: the next schema
// down, whose bucket k holds the buckets 2k-1 and 2k of this one.
func (h *latency) halve() {
	n := uint8(0)
	for i := range h.n {
		k := (h.keys[i] + 1) >> 1
		if n > 0 && h.keys[n-1] == k {
			h.counts[n-1] += h.counts[i]
			continue
		}
		h.keys[n], h.counts[n] = k, h.counts[i]
		n++
	}
	clear(h.counts[n:])
	h.n = n
	h.schema--
}

func (h *latency) reset(now time.Time) {
	h.count, h.sum, h.zero, h.n, h.schema, h.created = 0, 0, 0, 0, nativeSchema, now
	clear(h.counts[:])
	clear(h.classic)
}

// histogramOut is what one Write of a latency allocates, in one piece.
type histogramOut struct {
	h              dto.Histogram
	count, zero    uint64
	sum, zeroLimit float64
	schema         int32
	created        timestamppb.Timestamp
	// Most latency histograms have one or two runs of buckets; more
	// take an allocation of their own.
	spans     [2]dto.BucketSpan
	spanPtrs  [2]*dto.BucketSpan
	offsets   [nativeMaxBuckets]int32
	lengths   [nativeMaxBuckets]uint32
	deltas    [nativeMaxBuckets]int64
	exemplars [1]*dto.Exemplar
	ex        exemplarOut
	inf       dto.Bucket
	infBound  float64
	buckets   [1]*dto.Bucket
}

func (h *latency) Desc() *prometheus.Desc { return h.desc }

// Write implements prometheus.Metric: the native histogram, its classic
// buckets when it has them, and its exemplar on the bucket it fell in
// (the +Inf one without classic buckets, for scrapers that read only
// those) and beside the native buckets.
func (h *latency) Write(out *dto.Metric) error {
	o := &histogramOut{}
	h.mu.Lock()
	defer h.mu.Unlock()
	o.count, o.sum, o.zero, o.zeroLimit, o.schema = h.count, h.sum, h.zero, nativeZeroThreshold, int32(h.schema)
	o.created = timestamppb.Timestamp{Seconds: h.created.Unix(), Nanos: int32(h.created.Nanosecond())}
	o.h.SampleCount, o.h.SampleSum, o.h.ZeroCount, o.h.ZeroThreshold, o.h.Schema = &o.count, &o.sum, &o.zero, &o.zeroLimit, &o.schema
	o.h.CreatedTimestamp = &o.created
	// A span for each run of neighbouring buckets. A histogram with none
	// still has one, of length 0, or a scraper would take it for a
	// classic one.
	spans, next := 0, int32(0)
	var prev uint64
	for i, k := range h.keys[:h.n] {
		if i == 0 || k != next {
			o.offsets[spans] = k - next
			if i == 0 {
				o.offsets[spans] = k
			}
			spans++
		}
		o.lengths[spans-1]++
		next = k + 1
		c := h.counts[i]
		o.deltas[i] = int64(c - prev)
		prev = c
	}
	if spans == 0 {
		spans = 1
	}
	all, ptrs := o.spans[:], o.spanPtrs[:]
	if spans > len(all) {
		all, ptrs = make([]dto.BucketSpan, spans), make([]*dto.BucketSpan, spans)
	}
	for i := range spans {
		all[i].Offset, all[i].Length = &o.offsets[i], &o.lengths[i]
		ptrs[i] = &all[i]
	}
	o.h.PositiveSpan = ptrs[:spans]
	o.h.PositiveDelta = o.deltas[:h.n]
	var ex *dto.Exemplar
	if h.ex.ok {
		ex = o.ex.write(h.ex)
		o.exemplars[0] = ex
		o.h.Exemplars = o.exemplars[:]
	}
	if h.classic != nil {
		o.h.Bucket = h.classicBuckets(ex)
	} else if ex != nil {
		o.infBound = math.Inf(1)
		o.inf.CumulativeCount, o.inf.UpperBound, o.inf.Exemplar = &o.count, &o.infBound, ex
		o.buckets[0] = &o.inf
		o.h.Bucket = o.buckets[:]
	}
	out.Label = h.labels
	out.Histogram = &o.h
	return nil
}

// writeText writes the histogram's lines as Write's message is written:
// its classic buckets, or the +Inf bucket alone, the exemplar on the
// bucket it fell in, then its sum and count. What they read is copied
// under the histogram's lock, the lines written after it.
func (h *latency) writeText(w *agent.SeriesWriter, t *seriesText) {
	h.mu.Lock()
	count, sum, e := h.count, h.sum, h.ex
	t.buckets = append(t.buckets[:0], h.classic...)
	h.mu.Unlock()
	var ex *dto.Exemplar
	if e.ok {
		ex = t.ex.write(e)
	}
	if len(t.buckets) == 0 {
		w.Bucket(h.labels, math.Inf(1), count, ex)
	}
	h.eachClassic(t.buckets, ex, func(_ int, le float64, cum uint64, ex *dto.Exemplar) { w.Bucket(h.labels, le, cum, ex) })
	w.SumCount(h.labels, sum, count)
}

// classicBuckets are the cumulative classic buckets, +Inf last, the
// exemplar ex (nil for none) on the one its value fell in.
func (h *latency) classicBuckets(ex *dto.Exemplar) []*dto.Bucket {
	type bucket struct {
		b     dto.Bucket
		count uint64
		bound float64
	}
	bs := make([]bucket, len(h.classic))
	out := make([]*dto.Bucket, len(h.classic))
	h.eachClassic(h.classic, ex, func(i int, le float64, cum uint64, ex *dto.Exemplar) {
		b := &bs[i]
		b.count, b.bound = cum, le
		b.b.CumulativeCount, b.b.UpperBound, b.b.Exemplar = &b.count, &b.bound, ex
		out[i] = &b.b
	})
	return out
}

// eachClassic calls f with each classic bucket of counts (a count a
// bucket, +Inf's last): its index, upper bound and cumulative count, and
// ex (nil for none) on the bucket its value fell in.
func (h *latency) eachClassic(counts []uint64, ex *dto.Exemplar, f func(i int, le float64, cum uint64, ex *dto.Exemplar)) {
	exAt := -1
	if ex != nil {
		exAt = sort.SearchFloat64s(h.bounds, ex.GetValue())
	}
	var cum uint64
	for i, c := range counts {
		cum += c
		le := math.Inf(1)
		if i < len(h.bounds) {
			le = h.bounds[i]
		}
		var bex *dto.Exemplar
		if i == exAt {
			bex = ex
		}
		f(i, le, cum, bex)
	}
}
