package health

import (
	"fmt"
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
			prev := point{seq: 40, us: at.Add(-time.Second).UnixMicro()}
			enc, p := s.encodeCheck(nil, tt.c, prev)
			if p.seq != tt.c.Seq || p.us != tt.c.Time.UnixMicro() {
				t.Errorf("point %+v, want seq %d at %d µs", p, tt.c.Seq, tt.c.Time.UnixMicro())
			}
			if a := advance(enc, prev); a != p {
				t.Errorf("advance: %+v, want %+v", a, p)
			}
			sameCheck(t, s.decodeCheck(tt.c.Plugin, enc, prev), tt.c)
		})
	}
}

// TestEncodedCheckPastTheSymbolTable: once 255 strings are interned, new
// ones are written in full and still come back.
func TestEncodedCheckPastTheSymbolTable(t *testing.T) {
	var s symbols
	var encs [][]byte
	var prev point
	for i := range 300 {
		c := CheckRecord{Seq: int64(i), Time: time.Unix(int64(i), 0), State: State(fmt.Sprintf("s%d", i)),
			Probes: []ProbeOutcome{{Probe: fmt.Sprintf("probe%d", i), Class: probes.ErrorClass(fmt.Sprintf("c%d", i))}}}
		var enc []byte
		enc, prev = s.encodeCheck(nil, c, prev)
		encs = append(encs, enc)
	}
	if len(s.str) != 255 {
		t.Fatalf("symbol table holds %d strings, want 255", len(s.str))
	}
	prev = point{}
	for i, e := range encs {
		c := s.decodeCheck("p", e, prev)
		prev = advance(e, prev)
		if c.Seq != int64(i) || c.State != State(fmt.Sprintf("s%d", i)) || c.Probes[0].Probe != fmt.Sprintf("probe%d", i) ||
			c.Probes[0].Class != probes.ErrorClass(fmt.Sprintf("c%d", i)) {
			t.Fatalf("record %d decoded as %+v", i, c)
		}
	}
}

// TestEncodedCheckIsSmall: what the ring keeps per check is what sizes the
// agent's memory (256 checks per plugin by default).
func TestEncodedCheckIsSmall(t *testing.T) {
	var s symbols
	c := CheckRecord{Seq: 123456, Plugin: "p", Time: time.Now(), State: StateHealthy, OK: true, Latency: 1500 * time.Microsecond,
		Probes: []ProbeOutcome{
			{Probe: probes.Liveness, OK: true, Duration: 900 * time.Microsecond, Attempts: 1},
			{Probe: probes.Readiness, OK: true, Duration: 1500 * time.Microsecond, Attempts: 1},
			{Probe: probes.Resources, OK: true, Informational: true, Duration: 80 * time.Microsecond, Attempts: 1}}}
	c.Started, c.Duration = c.Time.Add(-1600*time.Microsecond), 1600*time.Microsecond
	// A second after the check before it, 1000 checks of other plugins
	// between them.
	prev := point{seq: c.Seq - 1000, us: c.Time.Add(-time.Second).UnixMicro()}
	s.encodeCheck(nil, c, prev) // the symbols exist
	if enc, _ := s.encodeCheck(nil, c, prev); len(enc) > 20 {
		t.Errorf("a healthy three-probe check encodes in %d bytes, want at most 20", len(enc))
	}
}

// sameCheck compares a decoded check with the one encoded, to the
// precision the encoding keeps: times to the microsecond, durations
// within 1/2048, tokens per second as a float32.
func sameCheck(t *testing.T, got, want CheckRecord) {
	t.Helper()
	near := func(what string, g, w time.Duration) {
		if d := g - w; d < -w/2048 || d > w/2048 {
			t.Errorf("%s: %v, want %v within 1/2048", what, g, w)
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
	at("started", got.Started, want.Started, time.Microsecond+want.Time.Sub(want.Started)/2048)
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

// TestQuantize: durations under 2048 ns are kept exactly, larger ones
// within 1/2048 of their value up to about 73 minutes, in order; those
// past it are the largest, negative ones 0.
func TestQuantize(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{-time.Second, 0}, {0, 0}, {1, 1}, {2047, 2047}, {2048, 2048}, {2049, 2050}, {4095, 4096}, {4097, 4096},
		{time.Millisecond, 999936}, {time.Second, 999817216}, {maxQuantized, maxQuantized},
		{maxQuantized + 1, maxQuantized}, {24 * time.Hour, maxQuantized},
	} {
		if got := dequantize(quantize(tt.in)); got != tt.want {
			t.Errorf("%d ns: kept as %d, want %d", tt.in, got, tt.want)
		}
	}
	if maxQuantized < 73*time.Minute {
		t.Errorf("largest duration kept %v, want at least 73m", maxQuantized)
	}
	last := time.Duration(0)
	for d := time.Duration(1); d < maxQuantized; d = d*17/16 + 1 {
		got := dequantize(quantize(d))
		if diff := got - d; diff < -d/2048 || diff > d/2048 {
			t.Fatalf("%d ns: kept as %d, off by more than 1/2048", d, got)
		}
		if got < last {
			t.Fatalf("%d ns: kept as %d, below %d kept for a shorter one", d, got, last)
		}
		last = got
	}
}
