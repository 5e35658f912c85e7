package health

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
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

// TestCheckRingKeepsTheLastN: the check ring keeps the last n records of
// any sizes, oldest first, across the wrap of its buffer and its growth,
// in a buffer not much larger than the records it holds, also while it
// fills.
func TestCheckRingKeepsTheLastN(t *testing.T) {
	for _, tt := range []struct{ n, adds int }{{3, 0}, {3, 2}, {3, 3}, {3, 5}, {1, 4}, {256, 9}, {256, 100}, {256, 2000}} {
		r := newCheckRing(tt.n)
		for i := range tt.adds {
			rec, at := testRecord(i, r.last)
			r.add(rec, at)
		}
		var want []string
		size := 0
		prev := point{}
		for i := range tt.adds {
			rec, at := testRecord(i, prev)
			prev = at
			if i >= tt.adds-tt.n {
				want = append(want, string(rec))
				size += len(rec) + 2
			}
		}
		if got := ringItems(t, r, max(0, tt.adds-tt.n)); !slices.Equal(got, want) {
			t.Errorf("n=%d after %d adds: %d records %q, want %d %q", tt.n, tt.adds, len(got), got, len(want), want)
		}
		// Full, about the records' size; filling, at most twice it.
		limit := size*2 + 64
		if tt.adds >= tt.n {
			limit = size*3/2 + 64
		}
		if len(r.buf) > limit {
			t.Errorf("n=%d after %d adds: buffer of %d bytes for %d bytes of records", tt.n, tt.adds, len(r.buf), size)
		}
	}
}

// testRecord is the ith test record after prev: a check's prefix (flags,
// its sequence number i and its time, i seconds and i*i µs) and 0 to 149
// bytes more.
func testRecord(i int, prev point) ([]byte, point) {
	at := point{seq: int64(i), us: int64(i)*1e6 + int64(i*i)}
	if i%5 == 4 {
		at.us = -at.us // time going back, as a stepped clock does
	}
	b := binary.AppendVarint(binary.AppendVarint([]byte{0}, at.seq-prev.seq), at.us-prev.us)
	return append(b, strings.Repeat(string(rune('a'+i%26)), i*7%150)...), at
}

// ringItems returns r's records, oldest first, checking that each one's
// point, from the ring's base across its wraps, is the one testRecord
// gave it, the first being the firstth.
func ringItems(t *testing.T, r *checkRing, first int) []string {
	t.Helper()
	var out []string
	i := first
	r.each(r.count, func(rec []byte, prev point) {
		if _, want := testRecord(i, point{}); advance(rec, prev) != want {
			t.Errorf("record %d at %+v, want %+v", i, advance(rec, prev), want)
		}
		out = append(out, string(rec))
		i++
	})
	return out
}

// TestCheckRingGrowsAsItFills: a ring of 256 that has seen 9 checks
// holds about 9 checks' bytes, not 256's: at a 10 s interval a ring
// takes 42 minutes to fill.
func TestCheckRingGrowsAsItFills(t *testing.T) {
	r := newCheckRing(256)
	var rec []byte
	for i := range 9 {
		var at point
		rec, at = testRecord(40, r.last)
		_ = i
		r.add(rec, at)
	}
	if held := 9 * (len(rec) + 1); len(r.buf) > 2*held {
		t.Errorf("%d bytes for 9 checks of %d bytes", len(r.buf), len(rec)+1)
	}
}

// TestHistoryRingIsSmall: a plugin's ring of 256 checks takes under
// 5 KiB of heap with one probe a check, 6 KiB with three (as a string
// each, with its header and its allocation's rounding, they took 12 and
// 16 KiB; encoded as they were before the differences and the quantized
// durations, 9 and 15).
func TestHistoryRingIsSmall(t *testing.T) {
	live := ProbeOutcome{Probe: "liveness", OK: true, Attempts: 1, Duration: 1200 * time.Microsecond}
	for _, tt := range []struct {
		name   string
		probes []ProbeOutcome
		limit  int64
	}{
		{"liveness", []ProbeOutcome{live}, 5 << 10},
		{"shipped probes", []ProbeOutcome{live, {Probe: "readiness", OK: true, Attempts: 1, Duration: 1500 * time.Microsecond},
			{Probe: "resources", OK: true, Informational: true, Attempts: 1, Duration: 90 * time.Microsecond}}, 6 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := OpenHistory(context.Background(), nil, HistoryConfig{Ring: 256}, nil)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Unix(1_800_000_000, 0)
			const plugins = 200
			ids := make([]string, plugins)
			for p := range ids {
				ids[p] = fmt.Sprintf("p%03d", p)
			}
			record := func(i int) {
				// A second apart, 1000 other checks between two of a plugin.
				for p, id := range ids {
					decided := at.Add(time.Duration(i)*time.Second + time.Duration(p)*time.Millisecond)
					h.Record(CheckRecord{Seq: int64(100000 + 1000*i + p), Plugin: id, Time: decided, Started: decided.Add(-1700 * time.Microsecond),
						Duration: 1700 * time.Microsecond, State: StateHealthy, OK: true, Latency: 1500 * time.Microsecond, Probes: tt.probes}, nil)
				}
			}
			record(0) // the maps and symbols exist before the measure
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 1; i < 1000; i++ {
				record(i)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / plugins
			t.Logf("%d bytes of heap per plugin for 256 checks", per)
			if per > tt.limit {
				t.Errorf("%d bytes of heap per plugin for 256 checks, want at most %d", per, tt.limit)
			}
			cs, _, err := h.Query(context.Background(), "p007", at, at.Add(time.Hour), 1000)
			if err != nil || len(cs) != 256 || cs[0].Seq != 100000+999*1000+7 || cs[255].Seq != 100000+744*1000+7 ||
				cs[0].Probes[0].Duration != dequantize(quantize(1200*time.Microsecond)) || len(cs[0].Probes) != len(tt.probes) {
				t.Errorf("query: %d checks (newest %+v), %v", len(cs), cs[0], err)
			}
			if got, want := cs[0].Time, at.Add(999*time.Second+7*time.Millisecond); !got.Equal(want) {
				t.Errorf("newest check at %v, want %v", got, want)
			}
			runtime.KeepAlive(h)
		})
	}
}
