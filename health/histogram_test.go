package health

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// nativeBuckets are a native histogram's populated buckets by key.
func nativeBuckets(h *dto.Histogram) map[int32]int64 {
	out := map[int32]int64{}
	key, count := int32(0), int64(0)
	d := 0
	for i, s := range h.GetPositiveSpan() {
		if i == 0 {
			key = s.GetOffset()
		} else {
			key += s.GetOffset()
		}
		for range s.GetLength() {
			count += h.GetPositiveDelta()[d]
			d++
			if count != 0 {
				out[key] = count
			}
			key++
		}
	}
	return out
}

// TestLatencyMatchesClientGolang: the latency histogram, fed the same
// durations as a client_golang histogram with the settings it replaces
// (bucket factor 1.1, at most 20 buckets, reset after an hour, classic
// buckets when configured), exports the same native histogram: schema,
// zero bucket, buckets by key, count and sum, and the same classic
// buckets. The wide case needs its resolution lowered, twice.
func TestLatencyMatchesClientGolang(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name    string
		sample  func() float64
		classic []float64
	}{
		{"narrow", func() float64 { return 0.001 + 0.002*rng.Float64() }, nil},
		{"wide, with timeouts", func() float64 {
			if rng.IntN(50) == 0 {
				return 5
			}
			return 0.0005 * math.Exp(4*rng.Float64())
		}, nil},
		{"zeros and classic buckets", func() float64 {
			if rng.IntN(10) == 0 {
				return 0
			}
			return 0.01 * rng.ExpFloat64()
		}, []float64{.005, .025, .1, .5, 2.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "ref", Help: "ref", Buckets: tc.classic,
				NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: nativeMaxBuckets,
				NativeHistogramMinResetDuration: nativeResetAfter,
			})
			desc := prometheus.NewDesc("l", "l", nil, nil)
			h := newLatency(desc, nil, tc.classic, time.Now())
			for range 5000 {
				v := tc.sample()
				ref.Observe(v)
				h.observe(v, time.Now(), exemplar{})
			}
			var want, got dto.Metric
			if err := ref.Write(&want); err != nil {
				t.Fatal(err)
			}
			if err := h.Write(&got); err != nil {
				t.Fatal(err)
			}
			w, g := want.GetHistogram(), got.GetHistogram()
			if g.GetSchema() != w.GetSchema() || g.GetZeroCount() != w.GetZeroCount() || g.GetSampleCount() != w.GetSampleCount() ||
				math.Abs(g.GetSampleSum()-w.GetSampleSum()) > 1e-9*w.GetSampleSum() || g.GetZeroThreshold() != w.GetZeroThreshold() {
				t.Errorf("schema %d, zero %d (threshold %g), count %d, sum %g; client_golang: %d, %d (%g), %d, %g",
					g.GetSchema(), g.GetZeroCount(), g.GetZeroThreshold(), g.GetSampleCount(), g.GetSampleSum(),
					w.GetSchema(), w.GetZeroCount(), w.GetZeroThreshold(), w.GetSampleCount(), w.GetSampleSum())
			}
			gb, wb := nativeBuckets(g), nativeBuckets(w)
			if len(gb) != len(wb) || len(gb) > nativeMaxBuckets {
				t.Errorf("%d buckets, client_golang %d (at most %d)", len(gb), len(wb), nativeMaxBuckets)
			}
			for k, c := range wb {
				if gb[k] != c {
					t.Errorf("bucket %d: %d, client_golang %d", k, gb[k], c)
				}
			}
			if tc.name == "wide, with timeouts" && g.GetSchema() >= nativeSchema {
				t.Errorf("schema %d: the wide case never lowered its resolution", g.GetSchema())
			}
			var classic []uint64
			for _, b := range g.GetBucket() {
				classic = append(classic, b.GetCumulativeCount())
			}
			var wantClassic []uint64
			for _, b := range w.GetBucket() {
				wantClassic = append(wantClassic, b.GetCumulativeCount())
			}
			if len(tc.classic) > 0 {
				wantClassic = append(wantClassic, w.GetSampleCount()) // +Inf, which client_golang leaves to the encoder
			}
			if len(classic) != len(wantClassic) {
				t.Fatalf("classic buckets %v, client_golang %v", classic, wantClassic)
			}
			for i := range classic {
				if classic[i] != wantClassic[i] {
					t.Errorf("classic buckets %v, client_golang %v", classic, wantClassic)
					break
				}
			}
		})
	}
}

// TestLatencyStartsOverAfterAnHour: a histogram whose buckets were
// widened starts over at full resolution an hour after it began, at its
// next observation.
func TestLatencyStartsOverAfterAnHour(t *testing.T) {
	start := time.Now()
	h := newLatency(prometheus.NewDesc("l", "l", nil, nil), nil, nil, start)
	for i := range 200 {
		h.observe(0.001*math.Pow(1.1, float64(i%60)), start, exemplar{})
	}
	if h.schema >= nativeSchema {
		t.Fatalf("schema %d after 60 buckets' worth, want it lowered", h.schema)
	}
	h.observe(0.002, start.Add(nativeResetAfter), exemplar{})
	if h.schema != nativeSchema || h.count != 1 || h.n != 1 {
		t.Errorf("after an hour: schema %d, count %d, %d buckets; want %d, 1, 1", h.schema, h.count, h.n, nativeSchema)
	}
}
