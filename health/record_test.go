package health

import (
	"fmt"
	"reflect"
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
		{"failed with retries", CheckRecord{Seq: 7, Plugin: "p", Time: at, State: StateUnhealthy, Probe: probes.Liveness,
			Class: probes.ClassHTTP5xx, Latency: 2 * time.Second, Probes: []ProbeOutcome{{Probe: probes.Liveness, Class: probes.ClassHTTP5xx,
				Error: `GET http://127.0.0.1:8080/v1/models: 503 Service Unavailable: "overloaded"`, Duration: 2 * time.Second, Attempts: 3, Failures: 3}}}},
		{"informational failure", CheckRecord{Seq: 1 << 40, Plugin: "p", Time: at, State: StateDegraded, OK: true, Latency: -time.Nanosecond,
			Probes: []ProbeOutcome{live, {Probe: probes.Resources, Informational: true, Class: probes.ClassOther, Error: "no such process", Attempts: 1, Failures: 1}}}},
		{"passive", CheckRecord{Seq: 3, Plugin: "p", Time: at, State: StateHealthy, OK: true, Probes: []ProbeOutcome{live,
			{Probe: probes.Synthetic, OK: true, Passive: true, Reason: "the server's own counters show work completing since the last check (40 tokens generated)"}}}},
		{"skipped", CheckRecord{Seq: 4, Plugin: "p", Time: at, State: StateHealthy, OK: true, Probes: []ProbeOutcome{live,
			{Probe: probes.Synthetic, Skipped: true, Informational: true, Reason: "daily token budget spent"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s symbols
			enc := string(s.encodeCheck(nil, tt.c))
			got := s.decodeCheck(tt.c.Plugin, enc)
			if !got.Time.Equal(tt.c.Time) {
				t.Errorf("time %v, want %v", got.Time, tt.c.Time)
			}
			got.Time = tt.c.Time
			if !reflect.DeepEqual(got, tt.c) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, tt.c)
			}
		})
	}
}

// TestEncodedCheckPastTheSymbolTable: once 255 strings are interned, new
// ones are written in full and still come back.
func TestEncodedCheckPastTheSymbolTable(t *testing.T) {
	var s symbols
	var encs []string
	for i := range 300 {
		c := CheckRecord{Seq: int64(i), Time: time.Unix(int64(i), 0), State: State(fmt.Sprintf("s%d", i)),
			Probes: []ProbeOutcome{{Probe: fmt.Sprintf("probe%d", i), Class: probes.ErrorClass(fmt.Sprintf("c%d", i))}}}
		encs = append(encs, string(s.encodeCheck(nil, c)))
	}
	if len(s.str) != 255 {
		t.Fatalf("symbol table holds %d strings, want 255", len(s.str))
	}
	for i, e := range encs {
		c := s.decodeCheck("p", e)
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
	if n := len(s.encodeCheck(nil, c)); n > 48 {
		t.Errorf("a healthy three-probe check encodes in %d bytes, want at most 48", n)
	}
}
