package ollama_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/ollama"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestDecodePSSignals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		path   []string
		models []probes.LoadedModel
	}{{
		name:   "recorded, nothing loaded",
		path:   []string{"..", "testdata", "peers", "ollama", "api_ps_idle.json"},
		models: []probes.LoadedModel{},
	}, {
		name: "recorded, one model on the CPU",
		path: []string{"..", "testdata", "peers", "ollama", "api_ps_loaded.json"},
		models: []probes.LoadedModel{
			{Name: "tiny:latest", SizeBytes: 1482496, ContextLength: 2048, Digest: "6bcf11190d71e13406d408455f611d066d8661ad65a3687db7021d34f0cc2b49", ExpiresAt: at(t, "2026-11-22T07:30:14.195493383Z")},
		},
	}, {
		name: "in VRAM, split with the CPU, kept for good",
		path: []string{"testdata", "signals-ollama-ps.json"},
		models: []probes.LoadedModel{
			{Name: "qwen3:8b", SizeBytes: 6654289920, VRAMBytes: 6654289920, ContextLength: 4096, Digest: "500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41", ExpiresAt: at(t, "2026-12-01T15:41:07.418592871Z")},
			{Name: "llama3.1:70b", SizeBytes: 45352566784, VRAMBytes: 23622320128, ContextLength: 8192, Digest: "711a9e8463afd9b6ba2e4d9a2a5af6abe8a5f0ef4f1dd6d6c06b5f6e8fd4bd4b", ExpiresAt: at(t, "2026-12-01T15:36:52.003917622Z")},
			{Name: "nomic-embed-text:latest", SizeBytes: 849001472, VRAMBytes: 849001472, ContextLength: 2048, Digest: "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f", ExpiresAt: at(t, "2318-09-19T16:12:33.204871102Z")},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(tc.path...))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ollama.DecodePSSignals(b)
			if err != nil {
				t.Fatal(err)
			}
			want := probes.Signals{Engine: probes.EngineOllama, Reported: probes.FieldLoadedModels, LoadedModels: tc.models}
			if !reflect.DeepEqual(s, want) {
				t.Fatalf("got  %+v\nwant %+v", s, want)
			}
		})
	}
}

func TestDecodePSSignalsErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"no list", `{}`, `no "models" list`},
		{"not JSON", `404 page not found`, "decode ollama /api/ps"},
		{"a model without a name", `{"models":[{"size":1}]}`, "model 0 has no name"},
		{"a bad expiry", `{"models":[{"name":"m","expires_at":"soon"}]}`, `model "m": expires_at`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ollama.DecodePSSignals([]byte(tc.body))
			var de *probes.DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a *DecodeError saying %q", err, tc.want)
			}
		})
	}
	// Go's zero time, as a model without an expiry would marshal, is none.
	s, err := ollama.DecodePSSignals([]byte(`{"models":[{"name":"m","expires_at":"0001-01-01T00:00:00Z"}]}`))
	if err != nil || len(s.LoadedModels) != 1 || !s.LoadedModels[0].ExpiresAt.IsZero() {
		t.Fatalf("zero expiry: %+v, %v", s, err)
	}
}

func FuzzDecodePSSignals(f *testing.F) {
	for _, p := range [][]string{
		{"..", "testdata", "peers", "ollama", "api_ps_idle.json"},
		{"..", "testdata", "peers", "ollama", "api_ps_loaded.json"},
		{"testdata", "signals-ollama-ps.json"},
	} {
		b, err := os.ReadFile(filepath.Join(p...))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ollama.DecodePSSignals(b)
		if err != nil {
			return
		}
		if s.Reported != probes.FieldLoadedModels || s.LoadedModels == nil {
			t.Fatalf("decoded %+v from %q", s, b)
		}
		for _, m := range s.LoadedModels {
			if m.Name == "" {
				t.Fatalf("a loaded model without a name from %q", b)
			}
		}
	})
}
