package llamacpp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/llamacpp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// peers is where the recorded responses of real servers live.
var peers = filepath.Join("..", "testdata", "peers")

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(peers, name))
	if err != nil {
		t.Fatalf("recorded fixture (probes/testdata/peers): %v", err)
	}
	return b
}

func TestDecodeModelsFixtures(t *testing.T) {
	tests := []struct {
		file    string
		written bool
		id      string
		nctx    int64
		size    int64
	}{
		{"llamacpp/v1_models.json", true, "tiny", 2048, 538880},
		{"llamacpp/embed_v1_models.json", true, "tiny-embed", 2048, 538880},
		{"ollama/v1_models.json", false, "tiny:latest", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			l, err := llamacpp.DecodeModels(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Data) != 1 || l.Data[0].ID != tt.id {
				t.Fatalf("models %+v, want one %q", l.Data, tt.id)
			}
			if l.Written() != tt.written {
				t.Fatalf("Written = %v, want %v", l.Written(), tt.written)
			}
			if m := l.Data[0].Meta; tt.nctx != 0 && (m == nil || m.NCtx != tt.nctx || m.Size != tt.size) {
				t.Fatalf("meta %+v", m)
			}
		})
	}
}

func TestDecodeFixtures(t *testing.T) {
	p, err := llamacpp.DecodeProps(fixture(t, "llamacpp/props.json"))
	if err != nil || p.BuildInfo != "b1-de3ff81" || p.DefaultGenerationSettings.NCtx != 2048 || p.TotalSlots != 4 || p.Modalities.Vision {
		t.Fatalf("props %+v, %v", p, err)
	}
	h, err := llamacpp.DecodeHealth(fixture(t, "llamacpp/health.json"))
	if err != nil || h.Status != "ok" {
		t.Fatalf("health %+v, %v", h, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func([]byte) error
		body string
	}{
		{"models no data", func(b []byte) error { _, err := llamacpp.DecodeModels(b); return err }, `{"object":"list"}`},
		{"props empty", func(b []byte) error { _, err := llamacpp.DecodeProps(b); return err }, `{}`},
		{"health empty", func(b []byte) error { _, err := llamacpp.DecodeHealth(b); return err }, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var de *probes.DecodeError
			if err := tt.fn([]byte(tt.body)); !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *probes.DecodeError", err)
			}
		})
	}
}

// sim starts an aisim server of kind k and returns a client for it.
func sim(t *testing.T, cfg aisim.Config) *llamacpp.Client {
	t.Helper()
	s, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return llamacpp.New(&http.Client{Transport: tr}, srv.URL)
}

func TestDetect(t *testing.T) {
	tests := []struct {
		modelType string
		caps      []probes.Capability
		models    []string
	}{
		{"", []probes.Capability{probes.CapChat, probes.CapCompletion}, []string{"tiny"}},
		{"embedding", []probes.Capability{probes.CapEmbeddings}, []string{"tiny-embed"}},
	}
	for _, tt := range tests {
		t.Run(tt.modelType, func(t *testing.T) {
			c := sim(t, aisim.Config{Kind: probes.KindLlamaCpp, ModelType: tt.modelType})
			d, err := c.Detect(context.Background(), false, true)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range d.Models {
				ids = append(ids, m.ID)
			}
			if d.Kind != probes.KindLlamaCpp || d.Version != "b1-aisim" || !slices.Equal(d.Capabilities, tt.caps) || !slices.Equal(ids, tt.models) {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

// Another OpenAI-compatible server is not llama.cpp, unless the target is
// configured as llama.cpp.
func TestDetectOtherServer(t *testing.T) {
	c := sim(t, aisim.Config{Kind: probes.KindVLLM})
	if _, err := c.Detect(context.Background(), false, true); !errors.Is(err, probes.ErrNoMatch) {
		t.Fatalf("vLLM: %v, want ErrNoMatch", err)
	}
	d, err := c.Detect(context.Background(), true, true)
	if err != nil || d.Kind != probes.KindLlamaCpp {
		t.Fatalf("vLLM claimed as llama.cpp: %+v, %v", d, err)
	}
}
