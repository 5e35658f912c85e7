package kserve_test

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
	"github.com/vitals-dev/vitals/probes/kserve"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// written reads a body written from Triton 2.x's documentation, in
// probes/testdata/written/triton (its README names the sources).
func written(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "written", "triton", name))
	if err != nil {
		t.Fatalf("written fixture (probes/testdata/written): %v", err)
	}
	return b
}

// index is a repository index with a model that failed to load, which the
// written one (all ready) has not.
const index = `[{"name":"bert","version":"1","state":"READY"},{"name":"broken","state":"UNAVAILABLE","reason":"load failed"}]`

func TestModelCaps(t *testing.T) {
	tests := []struct {
		name string
		meta kserve.ModelMetadata
		want []probes.Capability
	}{
		{"llm", kserve.ModelMetadata{Name: "ensemble", Inputs: []kserve.Tensor{{Name: "text_input"}}}, []probes.Capability{probes.CapCompletion}},
		{"embedding", kserve.ModelMetadata{Name: "bert", Outputs: []kserve.Tensor{{Name: "sentence_embedding"}}}, []probes.Capability{probes.CapEmbeddings}},
		{"classifier", kserve.ModelMetadata{Name: "sst2", Outputs: []kserve.Tensor{{Name: "logits"}}}, []probes.Capability{probes.CapClassification}},
		// A model's name is no evidence of what it does.
		{"scores, whatever the name", kserve.ModelMetadata{Name: "bge-reranker", Outputs: []kserve.Tensor{{Name: "scores"}}}, []probes.Capability{probes.CapClassification}},
		{"a name only", kserve.ModelMetadata{Name: "e5-embedder", Outputs: []kserve.Tensor{{Name: "out"}}}, nil},
		{"opaque", kserve.ModelMetadata{Name: "resnet", Outputs: []kserve.Tensor{{Name: "out"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.meta.Caps(); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	m, err := kserve.DecodeServerMetadata(written(t, "v2.json"))
	if err != nil || m.Name != "triton" || m.Version != "2.50.0" || len(m.Extensions) != 3 {
		t.Fatalf("server %+v, %v", m, err)
	}
	idx, err := kserve.DecodeIndex([]byte(index))
	if err != nil || len(idx) != 2 || idx[1].State != "UNAVAILABLE" {
		t.Fatalf("index %+v, %v", idx, err)
	}
	md, err := kserve.DecodeModelMetadata(written(t, "v2_models_bert.json"))
	if err != nil || md.Outputs[0].Shape[1] != 384 {
		t.Fatalf("model %+v, %v", md, err)
	}
	for _, bad := range []string{`{}`, `{"name":"triton"}`, `[]`, `{"error":"x"}`} {
		if _, err := kserve.DecodeServerMetadata([]byte(bad)); probes.Classify(err) != probes.ClassBadResponse {
			t.Errorf("DecodeServerMetadata(%s) = %v", bad, err)
		}
	}
	if _, err := kserve.DecodeIndex([]byte(`[{}]`)); probes.Classify(err) != probes.ClassBadResponse {
		t.Errorf("nameless index entry accepted: %v", err)
	}
	if _, err := kserve.DecodeInfer([]byte(`{"model_name":"x","outputs":[]}`)); probes.Classify(err) != probes.ClassBadResponse {
		t.Errorf("infer without outputs accepted: %v", err)
	}
}

func sim(t *testing.T) (*aisim.Server, *kserve.Client) {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindKServe})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	return s, kserve.New(client(t), srv.URL)
}

func TestDetect(t *testing.T) {
	_, c := sim(t)
	ctx := context.Background()
	d, err := c.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []probes.Capability{probes.CapCompletion, probes.CapEmbeddings, probes.CapClassification}
	if d.Kind != probes.KindKServe || d.Server != "triton" || d.Version != "2.50.0" || !slices.Equal(d.Capabilities, want) || len(d.Models) != 3 {
		t.Fatalf("got %+v", d)
	}
	for _, m := range d.Models {
		if !m.Loaded {
			t.Errorf("model %s not ready", m.ID)
		}
	}
	if err := c.Live(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ModelReady(ctx, "nope"); probes.Classify(err) != probes.ClassBadResponse {
		t.Fatalf("unknown model ready: %v", err)
	}
}

func TestInfer(t *testing.T) {
	_, c := sim(t)
	r, err := c.Infer(context.Background(), "sim-embed", kserve.InferRequest{Inputs: []kserve.InferTensor{
		{Name: "text", Datatype: "BYTES", Shape: []int64{2}, Data: []any{"a", "b"}}}})
	if err != nil || r.ModelName != "sim-embed" || len(r.Outputs[0].Data) != 32 {
		t.Fatalf("infer %+v, %v", r, err)
	}
}

func TestDetectNoMatch(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := kserve.New(client(t), srv.URL).Detect(context.Background())
	if !errors.Is(err, probes.ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}
