package health

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

func TestEncodedCheckRoundTrips(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	live := ProbeOutcome{Probe: probes.Liveness, OK: true, Duration: 812 * time.Microsecond, Attempts: 1}
	for _, tt := range []struct {
		name string
		c    CheckRecord
	}{
		{"empty", CheckRecord{Plugin: "p", Time: time.Unix(0, 0)}},
		{"healthy", CheckRecord{Seq: 42, Plugin: "p", Time: at, State: StateHealthy, OK: true, Latency: 3 * time.Millisecond,
			TTFT: 40 * time.Millisecond, TPS: 87.25, Probes: []ProbeOutcome{live,
				{Probe: probes.Readiness, OK: true, Duration: time.Millisecond, Attempts: 1},
				{Probe: probes.Synthetic, OK: true, Duration: 3 * time.Millisecond, Attempts: 1},
				{Probe: probes.Resources, OK: true, Informational: true, Duration: 90 * time.Microsecond, Attempts: 1}}}},
		{"timed", CheckRecord{Seq: 43, Plugin: "p", Time: at, Started: at.Add(-1234567 * time.Nanosecond), Duration: 1234567 * time.Nanosecond,
			State: StateHealthy, OK: true, Latency: 812 * time.Microsecond, Probes: []ProbeOutcome{live}}},
		{"timed, a duration of its own", CheckRecord{Seq: 44, Plugin: "p", Time: at, Started: at.Add(-3 * time.Second), Duration: 2 * time.Second,
			State: StateHealthy, OK: true, Probes: []ProbeOutcome{live}}},
		{"the zero time, seq going back", CheckRecord{Seq: 1, Plugin: "p", State: StateUnknown, Probes: []ProbeOutcome{
			{Probe: probes.Liveness, Attempts: 2, Failures: 1, OK: true, Duration: time.Hour}}}},
		{"failed with retries", CheckRecord{Seq: 7, Plugin: "p", Time: at, State: StateUnhealthy, Probe: probes.Liveness,
			Class: probes.ClassHTTP5xx, Latency: 2 * time.Second, Probes: []ProbeOutcome{{Probe: probes.Liveness, Class: probes.ClassHTTP5xx,
				Error: `GET http://127.0.0.1:8080/v1/models: 503 Service Unavailable: "overloaded"`, Duration: 2 * time.Second, Attempts: 3, Failures: 3}}}},
		{"informational failure", CheckRecord{Seq: 1 << 40, Plugin: "p", Time: at, State: StateDegraded, OK: true, Latency: time.Nanosecond,
			Probes: []ProbeOutcome{live, {Probe: probes.Resources, Informational: true, Class: probes.ClassOther, Error: "no such process", Attempts: 1, Failures: 1}}}},
		{"passive", CheckRecord{Seq: 3, Plugin: "p", Time: at, State: StateHealthy, OK: true, Probes: []ProbeOutcome{live,
			{Probe: probes.Synthetic, OK: true, Passive: true, Reason: "the server's own counters show work completing since the last check (40 tokens generated)"}}}},
		{"skipped", CheckRecord{Seq: 4, Plugin: "p", Time: at, State: StateHealthy, OK: true, Probes: []ProbeOutcome{live,
			{Probe: probes.Synthetic, Skipped: true, Informational: true, Reason: "daily token budget spent"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s symbols
			key, vary := s.encodeCheck(nil, nil, tt.c)
			sameCheck(t, s.decodeCheck(tt.c.Plugin, key, vary, tt.c.Seq, tt.c.Time.UnixMicro()), tt.c)
			// The same check again, but for what varies, has the same key
			// and a vary part as long: the ring keeps it in a run.
			again := tt.c
			again.Latency, again.TTFT, again.TPS = again.Latency*3+7, again.TTFT*2, again.TPS*1.5
			if !again.Started.IsZero() {
				again.Started = again.Started.Add(-time.Millisecond)
				if tt.c.Duration == tt.c.Time.Sub(tt.c.Started) {
					again.Duration = again.Time.Sub(again.Started)
				}
			}
			again.Probes = slices.Clone(again.Probes)
			for i := range again.Probes {
				again.Probes[i].Duration = again.Probes[i].Duration*9/8 + 3
			}
			if len(tt.c.Probes) > 0 && tt.c.Latency == slowest(tt.c.Probes) {
				again.Latency = slowest(again.Probes)
			}
			key2, vary2 := s.encodeCheck(nil, nil, again)
			if string(key2) != string(key) || len(vary2) != len(vary) {
				t.Errorf("changed only in its durations: key %x vary %d bytes, want key %x vary %d bytes", key2, len(vary2), key, len(vary))
			}
			sameCheck(t, s.decodeCheck(tt.c.Plugin, key, vary2, tt.c.Seq, tt.c.Time.UnixMicro()), again)
		})
	}
}

// TestEncodedCheckPastTheSymbolTable: once 255 strings are interned, new
// ones are written in full and still come back.
func TestEncodedCheckPastTheSymbolTable(t *testing.T) {
	var s symbols
	var keys, varys [][]byte
	for i := range 300 {
		c := CheckRecord{Seq: int64(i), Time: time.Unix(int64(i), 0), State: State(fmt.Sprintf("s%d", i)),
			Probes: []ProbeOutcome{{Probe: fmt.Sprintf("probe%d", i), Class: probes.ErrorClass(fmt.Sprintf("c%d", i))}}}
		key, vary := s.encodeCheck(nil, nil, c)
		keys, varys = append(keys, key), append(varys, vary)
	}
	if len(s.str) != 255 {
		t.Fatalf("symbol table holds %d strings, want 255", len(s.str))
	}
	for i := range keys {
		c := s.decodeCheck("p", keys[i], varys[i], int64(i), int64(i)*1e6)
		if c.Seq != int64(i) || c.State != State(fmt.Sprintf("s%d", i)) || c.Probes[0].Probe != fmt.Sprintf("probe%d", i) ||
			c.Probes[0].Class != probes.ErrorClass(fmt.Sprintf("c%d", i)) {
			t.Fatalf("record %d decoded as %+v", i, c)
		}
	}
}

// TestEncodedCheckIsSmall: what the ring keeps per check is what sizes the
// agent's memory (256 checks per plugin by default). A healthy check of
// three probes is a key of 6 bytes, kept once for a run of them, and 8
// bytes of durations.
func TestEncodedCheckIsSmall(t *testing.T) {
	var s symbols
	c := CheckRecord{Seq: 123456, Plugin: "p", Time: time.Now(), State: StateHealthy, OK: true, Latency: 1500 * time.Microsecond,
		Probes: []ProbeOutcome{
			{Probe: probes.Liveness, OK: true, Duration: 900 * time.Microsecond, Attempts: 1},
			{Probe: probes.Readiness, OK: true, Duration: 1500 * time.Microsecond, Attempts: 1},
			{Probe: probes.Resources, OK: true, Informational: true, Duration: 80 * time.Microsecond, Attempts: 1}}}
	c.Started, c.Duration = c.Time.Add(-1600*time.Microsecond), 1600*time.Microsecond
	s.encodeCheck(nil, nil, c) // the symbols exist
	if key, vary := s.encodeCheck(nil, nil, c); len(key) > 6 || len(vary) > 6 {
		t.Errorf("a healthy three-probe check encodes in a key of %d bytes and %d of durations, want at most 6 and 6", len(key), len(vary))
	}
}

// sameCheck compares a decoded check with the one encoded, to the
// precision the encoding keeps: times to the microsecond, durations
// within 1/128, tokens per second as a float32.
func sameCheck(t *testing.T, got, want CheckRecord) {
	t.Helper()
	near := func(what string, g, w time.Duration) {
		if d := g - w; d < -w/128 || d > w/128 {
			t.Errorf("%s: %v, want %v within 1/128", what, g, w)
		}
	}
	at := func(what string, g, w time.Time, tolerance time.Duration) {
		if w.IsZero() {
			if !g.IsZero() {
				t.Errorf("%s: %v, want the zero time", what, g)
			}
			return
		}
		if d := w.Sub(g); d < -tolerance || d > tolerance {
			t.Errorf("%s: %v, want %v within %v", what, g, w, tolerance)
		}
	}
	at("time", got.Time, want.Time, time.Microsecond)
	at("started", got.Started, want.Started, time.Microsecond+want.Time.Sub(want.Started)/128)
	near("latency", got.Latency, want.Latency)
	near("ttft", got.TTFT, want.TTFT)
	near("duration", got.Duration, want.Duration)
	if float32(got.TPS) != float32(want.TPS) {
		t.Errorf("tps: %v, want %v", got.TPS, want.TPS)
	}
	got.Time, got.Started, got.Latency, got.TTFT, got.Duration, got.TPS = want.Time, want.Started, want.Latency, want.TTFT, want.Duration, want.TPS
	if len(got.Probes) == len(want.Probes) {
		got.Probes = slices.Clone(got.Probes)
		for i := range got.Probes {
			near("probe "+want.Probes[i].Probe, got.Probes[i].Duration, want.Probes[i].Duration)
			got.Probes[i].Duration = want.Probes[i].Duration
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

// TestQuantize: durations under 64 ns are kept exactly, larger ones
// within 1/128 of their value, in order, up to centuries; those past it
// are the largest, negative ones 0. Three codes pack in five bytes and
// read back in order.
func TestQuantize(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{-time.Second, 0}, {0, 0}, {1, 1}, {63, 63}, {64, 64}, {127, 127}, {128, 128}, {129, 130}, {255, 256}, {257, 256},
		{time.Millisecond, 999424}, {time.Second, 998244352}, {maxQuantized, maxQuantized},
		{maxQuantized + 1, maxQuantized}, {math.MaxInt64, maxQuantized},
	} {
		if got := dequantize(quantize(tt.in)); got != tt.want {
			t.Errorf("%d ns: kept as %d, want %d", tt.in, got, tt.want)
		}
	}
	if maxQuantized < 100*365*24*time.Hour || quantize(math.MaxInt64) >= 1<<12 {
		t.Errorf("largest duration kept %v, code %d: want a century or more in 12 bits", maxQuantized, quantize(math.MaxInt64))
	}
	last := time.Duration(0)
	for d := time.Duration(1); d < maxQuantized && d > 0; d = d*17/16 + 1 {
		got := dequantize(quantize(d))
		if diff := got - d; diff < -d/128 || diff > d/128 {
			t.Fatalf("%d ns: kept as %d, off by more than 1/128", d, got)
		}
		if got < last {
			t.Fatalf("%d ns: kept as %d, below %d kept for a shorter one", d, got, last)
		}
		last = got
	}
	in := []uint16{quantize(time.Millisecond), maxCode, quantize(7)}
	b := packCodes([]byte{0xAA}, in)
	if len(b) != 1+packedLen(3) || packedLen(3) != 5 {
		t.Fatalf("three codes packed in %d bytes, want 5", len(b)-1)
	}
	c := packedCodes{b: b[1:]}
	for i, q := range in {
		if got := c.next(); got != dequantize(q) {
			t.Errorf("code %d read back as %v, want %v", i, got, dequantize(q))
		}
	}
}
