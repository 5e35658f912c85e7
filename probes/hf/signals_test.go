package hf_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
	"github.com/vitals-dev/vitals/probes/hf"
)

func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		file  string
		table probes.SignalTable
		want  probes.Signals
	}{{
		file:  "signals-tgi.txt",
		table: hf.TGISignals,
		want: probes.Signals{
			Engine:          probes.EngineTGI,
			Reported:        probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldGeneratedTokens | probes.FieldRequests,
			RequestsRunning: 2, RequestsWaiting: 1, GeneratedTokens: 8123,
			Requests: map[probes.RequestResult]float64{probes.RequestSuccess: 44, probes.RequestFailure: 3, probes.RequestCanceled: 2},
		},
	}, {
		file:  "signals-tei.txt",
		table: hf.TEISignals,
		want: probes.Signals{
			Engine:          probes.EngineTEI,
			Reported:        probes.FieldRequestsWaiting | probes.FieldRequests,
			RequestsWaiting: 5,
			Requests:        map[probes.RequestResult]float64{probes.RequestSuccess: 117 + 8, probes.RequestFailure: 2, probes.RequestCanceled: 1},
		},
	}} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.table.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if es, _ := engines.Registry().Fingerprint(b); es.Table.Engine != tc.want.Engine {
				t.Fatalf("Fingerprint = %q, want %q", es.Table.Engine, tc.want.Engine)
			}
		})
	}
}

// TestTGIFresh is a TGI that has served nothing yet: the exporter has
// written only the gauges set at start, so no request counter is
// reported, rather than zeros.
func TestTGIFresh(t *testing.T) {
	s, err := hf.TGISignals.Decode([]byte("# TYPE tgi_batch_max_total_tokens gauge\ntgi_batch_max_total_tokens 16000\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Reported != 0 || s.Requests != nil {
		t.Fatalf("a fresh TGI reports %v: %+v", s.Reported, s)
	}
}
