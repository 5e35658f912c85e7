package llamacpp_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/llamacpp"
)

func readFile(t testing.TB, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetricsSignals(t *testing.T) {
	running := probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldGeneratedTokens
	for _, tc := range []struct {
		name string
		path []string
		want probes.Signals
	}{{
		// Recorded from a real llama-server, idle: every field is a zero,
		// and reported.
		name: "recorded idle",
		path: []string{"..", "testdata", "peers", "llamacpp", "metrics.txt"},
		want: probes.Signals{Engine: probes.EngineLlamaCpp, Reported: running},
	}, {
		// The same build's families, busy; the token counter printed with
		// six digits.
		name: "busy",
		path: []string{"testdata", "signals-llamacpp.txt"},
		want: probes.Signals{Engine: probes.EngineLlamaCpp, Reported: running, RequestsRunning: 3, RequestsWaiting: 2, GeneratedTokens: 2415730},
	}, {
		name: "an older build with the KV-cache gauges",
		path: []string{"testdata", "signals-llamacpp-kv.txt"},
		want: probes.Signals{Engine: probes.EngineLlamaCpp, Reported: running | probes.FieldKVCacheUsage, RequestsRunning: 1, KVCacheUsage: 0.37207, GeneratedTokens: 31877},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := readFile(t, tc.path...)
			got, err := llamacpp.MetricsSignals.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != probes.EngineLlamaCpp {
				t.Fatalf("Fingerprint = %q", es.Table.Engine)
			}
		})
	}
}

func TestDecodeSlotsSignals(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       []string
		busy, idle int
	}{
		{"recorded idle", []string{"..", "testdata", "peers", "llamacpp", "slots.json"}, 0, 4},
		{"two of four busy", []string{"testdata", "signals-llamacpp-slots.json"}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := llamacpp.DecodeSlotsSignals(readFile(t, tc.path...))
			if err != nil {
				t.Fatal(err)
			}
			want := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldSlots, SlotsBusy: tc.busy, SlotsIdle: tc.idle}
			if !reflect.DeepEqual(s, want) {
				t.Fatalf("got %+v, want %+v", s, want)
			}
		})
	}
	for _, tc := range []struct{ name, body, want string }{
		{"not a list", `{"error":{"code":501,"message":"This server does not support slots endpoint."}}`, "decode llamacpp /slots"},
		{"no slots", `[]`, "no slots"},
		{"a slot without is_processing", `[{"id":0,"is_processing":false},{"id":1,"state":1}]`, "slot 1 has no is_processing"},
		{"empty", ``, "empty body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := llamacpp.DecodeSlotsSignals([]byte(tc.body))
			var de *probes.DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a *DecodeError saying %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeSlotsSignals(f *testing.F) {
	f.Add(readFile(f, "..", "testdata", "peers", "llamacpp", "slots.json"))
	f.Add(readFile(f, "testdata", "signals-llamacpp-slots.json"))
	f.Add([]byte(`[{"is_processing":null}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := llamacpp.DecodeSlotsSignals(b)
		if err != nil {
			return
		}
		if s.SlotsBusy < 0 || s.SlotsIdle < 0 || s.SlotsBusy+s.SlotsIdle == 0 || s.Reported != probes.FieldSlots {
			t.Fatalf("decoded %+v from %q", s, b)
		}
	})
}
