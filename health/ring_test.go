package health

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/heaptest"
)

func TestRingKeepsTheLastN(t *testing.T) {
	for _, tt := range []struct {
		n, adds int
		want    string
	}{
		{3, 0, "[]"}, {3, 2, "[1 2]"}, {3, 3, "[1 2 3]"}, {3, 5, "[3 4 5]"}, {3, 7, "[5 6 7]"}, {1, 4, "[4]"},
	} {
		r := newRing[int](tt.n)
		for i := 1; i <= tt.adds; i++ {
			r.add(i)
		}
		if got := fmt.Sprint(r.items()); got != tt.want {
			t.Errorf("n=%d after %d adds: %s, want %s", tt.n, tt.adds, got, tt.want)
		}
		if len(r.buf) > tt.n {
			t.Errorf("n=%d: buffer grew to %d", tt.n, len(r.buf))
		}
	}
}

// TestCheckRingKeepsTheLastN: the check ring keeps the last n checks of
// any sizes, runs and points, oldest first, across the wrap of its buffer,
// its growth and the drops that make a run's second check its first, in a
// buffer not much larger than the checks it holds, also while it fills.
func TestCheckRingKeepsTheLastN(t *testing.T) {
	for _, tt := range []struct{ n, adds int }{
		{3, 0}, {3, 2}, {3, 3}, {3, 5}, {1, 4}, {2, 40}, {7, 300}, {256, 9}, {256, 100}, {256, 2000},
	} {
		r := newCheckRing(tt.n)
		for i := range tt.adds {
			c := testCheck(i)
			r.add([]byte(c.key), []byte(c.vary), c.seq, c.us)
		}
		var want, got []testEntry
		size := 0
		for i := max(0, tt.adds-tt.n); i < tt.adds; i++ {
			c := testCheck(i)
			want = append(want, c)
			size += len(c.key) + len(c.vary) + 4
		}
		r.each(r.count, func(key, vary []byte, seq, us int64) {
			got = append(got, testEntry{string(key), string(vary), seq, us})
		})
		if !slices.Equal(got, want) {
			t.Errorf("n=%d after %d adds: %d checks\n%v\nwant %d\n%v", tt.n, tt.adds, len(got), got, len(want), want)
		}
		for k := range min(tt.n, tt.adds) + 1 {
			var last []testEntry
			r.each(k, func(key, vary []byte, seq, us int64) {
				last = append(last, testEntry{string(key), string(vary), seq, us})
			})
			if !slices.Equal(last, want[len(want)-min(k, len(want)):]) {
				t.Errorf("n=%d after %d adds: the last %d are %v", tt.n, tt.adds, k, last)
			}
		}
		// Full, about the checks' size; filling, at most twice it.
		limit := size*2 + 64
		if tt.adds >= tt.n {
			limit = size*3/2 + 64
		}
		if len(r.buf) > limit {
			t.Errorf("n=%d after %d adds: buffer of %d bytes for %d bytes of checks", tt.n, tt.adds, len(r.buf), size)
		}
	}
}

// TestCheckRingMatchesASlice: random checks, keys from a few so that runs
// form, break and resume, each ring against the last n of a plain slice,
// after every add.
func TestCheckRingMatchesASlice(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 3, 5, 16, 100} {
		r := newCheckRing(n)
		var all []testEntry
		seq, us := int64(0), int64(0)
		for i := range 3000 {
			k := rnd.IntN(3)
			key := strings.Repeat(string(rune('a'+k)), 1+k*9)
			vary := make([]byte, 2*k)
			for j := range vary {
				vary[j] = byte(rnd.Uint32())
			}
			switch rnd.IntN(20) {
			case 0:
				seq, us = rnd.Int64(), rnd.Int64()
			case 1:
				seq, us = seq-rnd.Int64N(1000), us-rnd.Int64N(1e9)
			default:
				seq, us = seq+1000+rnd.Int64N(50), us+1e6+rnd.Int64N(1e5)
			}
			c := testEntry{key, string(vary), seq, us}
			r.add([]byte(c.key), []byte(c.vary), c.seq, c.us)
			all = append(all, c)
			var got []testEntry
			r.each(n, func(key, vary []byte, seq, us int64) {
				got = append(got, testEntry{string(key), string(vary), seq, us})
			})
			if want := all[max(0, len(all)-n):]; !slices.Equal(got, want) {
				t.Fatalf("n=%d after %d adds: %v, want %v", n, i+1, got, want)
			}
		}
	}
}

type testEntry struct {
	key, vary string
	seq, us   int64
}

// testCheck is the ith test check: runs of 1 to 5 checks with the same key
// of 1 to 40 bytes, broken by a check of another key; a vary part of 0 to
// 8 bytes that the key decides; sequence numbers mostly 1000 apart, going
// back now and then (a new engine run) and far off (past the tag's room);
// times mostly a second apart with some jitter, going back as a stepped
// clock does, and at the ends of int64.
func testCheck(i int) testEntry {
	run := i / (1 + i%5)
	if i%7 == 3 {
		run = -i
	}
	key := strings.Repeat(string(rune('a'+(run%26+26)%26)), (run*7%40+40)%40+1)
	vary := make([]byte, (run%5+5)%5*2)
	for j := range vary {
		vary[j] = byte(i + j)
	}
	c := testEntry{key: key, vary: string(vary), seq: int64(i)*1000 + int64(i*i%17), us: int64(i)*1e6 + int64(i*i%4000)}
	switch {
	case i%50 == 49:
		c.seq = int64(i % 3)
	case i%97 == 96:
		c.seq = math.MaxInt64 - int64(i)
	case i%89 == 88:
		c.seq = math.MinInt64 + int64(i)
	}
	switch {
	case i%5 == 4:
		c.us = -c.us
	case i%61 == 60:
		c.us = math.MinInt64
	case i%67 == 66:
		c.us = math.MaxInt64
	}
	return c
}

// TestCheckRingKeepsARunOnce: checks that differ only in their durations,
// times and sequence numbers take their vary part and the second
// differences of their points: three bytes at a 1 s interval with
// milliseconds of lag, five with the scheduler's default jitter (±5 % of
// the interval), a thousand checks a second of all plugins numbered
// between two of them.
func TestCheckRingKeepsARunOnce(t *testing.T) {
	for _, tt := range []struct {
		name   string
		jitter float64
		point  float64
	}{{"no jitter", 0, 3}, {"5 % jitter", 0.05, 5}} {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(3, 4))
			r := newCheckRing(256)
			key, vary := []byte("flags, state, probe names"), make([]byte, 8)
			due := time.Unix(1_800_000_000, 0)
			for range 1000 {
				at := due.Add(time.Duration(rnd.Int64N(int64(4 * time.Millisecond))))
				r.add(key, vary, at.UnixMilli(), at.UnixMicro())
				due = due.Add(time.Second + time.Duration((2*rnd.Float64()-1)*tt.jitter*float64(time.Second)))
			}
			per := float64(r.used-len(key)-4) / float64(r.count)
			t.Logf("%.2f bytes a check", per)
			if per > float64(len(vary))+tt.point {
				t.Errorf("%.2f bytes a check of %d bytes of durations in a run, want at most %g", per, len(vary), float64(len(vary))+tt.point)
			}
		})
	}
}

// TestCheckRingGrowsAsItFills: a ring of 256 that has seen 9 checks
// holds about 9 checks' bytes, not 256's: at a 10 s interval a ring
// takes 42 minutes to fill.
func TestCheckRingGrowsAsItFills(t *testing.T) {
	r := newCheckRing(256)
	c := testCheck(40)
	for i := range 9 {
		r.add([]byte(c.key), []byte(c.vary), int64(i), int64(i)*1e6)
	}
	if held := len(c.key) + 9*(len(c.vary)+2) + 4; len(r.buf) > 2*held {
		t.Errorf("%d bytes for 9 checks holding %d", len(r.buf), held)
	}
}

// TestHistoryRingIsSmall: a plugin's ring of 256 checks and its first
// transition take under 2.5 KiB of heap with one probe a check, 3.5 KiB
// with three, checked as the scheduler runs them: a second apart give
// or take its 5 % jitter, their durations varying, a thousand checks a
// second of all plugins. (As a string each, with its header and its
// allocation's rounding, they took 12 and 16 KiB; encoded as they were
// before the differences and the quantized durations, 9 and 15; each check
// on its own, before the runs and the second differences, 3.6 and 6.0;
// with durations of 16 bits, not 12, 2.4 and 3.5.)
func TestHistoryRingIsSmall(t *testing.T) {
	live := ProbeOutcome{Probe: "liveness", OK: true, Attempts: 1, Duration: 1200 * time.Microsecond}
	for _, tt := range []struct {
		name   string
		probes []ProbeOutcome
		limit  int64
	}{
		{"liveness", []ProbeOutcome{live}, 2560},
		{"shipped probes", []ProbeOutcome{live, {Probe: "readiness", OK: true, Attempts: 1, Duration: 1500 * time.Microsecond},
			{Probe: "resources", OK: true, Informational: true, Attempts: 1, Duration: 90 * time.Microsecond}}, 3584},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := OpenHistory(context.Background(), nil, HistoryConfig{Ring: 256}, nil)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Unix(1_800_000_000, 0)
			const plugins = 200
			ids := make([]string, plugins)
			due := make([]time.Time, plugins)
			for p := range ids {
				ids[p] = fmt.Sprintf("p%03d", p)
				due[p] = at.Add(time.Duration(p) * time.Second / plugins)
			}
			rnd := rand.New(rand.NewPCG(1, 2))
			vary := func(d time.Duration) time.Duration { return d*7/10 + time.Duration(rnd.Int64N(int64(d)*6/10)) }
			// p007's checks, allocated before the measure.
			kept := make([]CheckRecord, 0, 1000)
			keptProbes := make([]ProbeOutcome, 1000*len(tt.probes))
			scratch := slices.Clone(tt.probes)
			record := func(first bool) {
				for p, id := range ids {
					c := CheckRecord{Plugin: id, State: StateHealthy, OK: true, Probes: scratch}
					if p == 7 {
						c.Probes = keptProbes[len(kept)*len(tt.probes):][:len(tt.probes)]
					}
					copy(c.Probes, tt.probes)
					for i := range c.Probes {
						c.Probes[i].Duration = vary(c.Probes[i].Duration)
					}
					c.Latency = slowest(c.Probes)
					c.Started = due[p].Add(time.Duration(rnd.Int64N(int64(time.Millisecond))))
					c.Duration = c.Latency + vary(100*time.Microsecond)
					c.Time = c.Started.Add(c.Duration)
					// The engine numbers the checks of every plugin, a
					// thousand a second.
					c.Seq = 100000 + int64(c.Time.Sub(at)/time.Millisecond)
					var tr *Transition
					if first {
						tr = &Transition{Plugin: id, Time: c.Time, Started: c.Started, Duration: c.Duration,
							From: StateUnknown, To: StateHealthy, Reason: "liveness and readiness passed"}
					}
					h.Record(c, tr)
					if p == 7 {
						kept = append(kept, c)
					}
					due[p] = due[p].Add(time.Second + time.Duration((2*rnd.Float64()-1)*0.05*float64(time.Second)))
				}
			}
			heaptest.PerItem(t, "per plugin for 256 checks", plugins, tt.limit, func() {
				record(true) // the plugin's first transition, from unknown
				for range 999 {
					record(false)
				}
			})
			cs, _, err := h.Query(context.Background(), "p007", at, at.Add(time.Hour), 1000)
			if err != nil || len(cs) != 256 {
				t.Fatalf("query: %d checks, %v", len(cs), err)
			}
			for i, c := range cs {
				sameCheck(t, c, kept[len(kept)-1-i])
			}
			runtime.KeepAlive(h)
		})
	}
}
