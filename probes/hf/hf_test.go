package hf_test

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
	"github.com/vitals-dev/vitals/probes/hf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// written reads a body written from an engine's documentation, in
// probes/testdata/written (its README names the sources).
func written(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "written", name))
	if err != nil {
		t.Fatalf("written fixture (probes/testdata/written): %v", err)
	}
	return string(b)
}

// TGI's /info of a vision model and TEI's of a reranker and a classifier,
// short: the /info of TGI 3.0 and TEI 1.5 in full are in
// probes/testdata/written.
const (
	teiRank = `{"model_id":"BAAI/bge-reranker-base","model_type":{"reranker":{"id2label":{"0":"LABEL_0"},"label2id":{"LABEL_0":0}}},"max_input_length":512,"version":"1.5.0"}`
	teiCls  = `{"model_id":"x/sentiment","model_type":{"classifier":{"id2label":{"0":"NEG","1":"POS"}}},"max_input_length":512,"version":"1.5.0"}`
)

func TestDecodeInfo(t *testing.T) {
	tests := []struct {
		name string
		body string
		kind probes.Kind
		caps []probes.Capability
		ctx  int64
	}{
		{"tgi", written(t, "tgi/info.json"), probes.KindTGI, []probes.Capability{probes.CapChat, probes.CapCompletion}, 2048},
		{"tgi vision", `{"model_id":"m","model_pipeline_tag":"image-text-to-text","max_input_tokens":10,"version":"3"}`, probes.KindTGI,
			[]probes.Capability{probes.CapChat, probes.CapCompletion, probes.CapVision}, 10},
		{"tei embedding", written(t, "tei/info.json"), probes.KindTEI, []probes.Capability{probes.CapEmbeddings}, 512},
		{"tei reranker", teiRank, probes.KindTEI, []probes.Capability{probes.CapRerank}, 512},
		{"tei classifier", teiCls, probes.KindTEI, []probes.Capability{probes.CapClassification}, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := hf.DecodeInfo([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if i.Kind() != tt.kind || !slices.Equal(i.Caps(), tt.caps) || i.ContextLength() != tt.ctx {
				t.Fatalf("kind %s caps %v ctx %d", i.Kind(), i.Caps(), i.ContextLength())
			}
		})
	}
	for _, bad := range []string{`{}`, `{"model_id":"x","version":"1"}`, `[]`, `<html>`} {
		if _, err := hf.DecodeInfo([]byte(bad)); probes.Classify(err) != probes.ClassBadResponse {
			t.Errorf("DecodeInfo(%s) = %v, want bad_response", bad, err)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		kind      probes.Kind
		modelType string
		caps      []probes.Capability
		model     string
	}{
		{probes.KindTGI, "", []probes.Capability{probes.CapChat, probes.CapCompletion}, "aisim/tiny-tgi"},
		{probes.KindTEI, "", []probes.Capability{probes.CapEmbeddings}, "aisim/tiny-embed"},
		{probes.KindTEI, "reranker", []probes.Capability{probes.CapRerank}, "aisim/tiny-reranker"},
		{probes.KindTEI, "classifier", []probes.Capability{probes.CapClassification}, "aisim/tiny-classifier"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"/"+tt.modelType, func(t *testing.T) {
			c := sim(t, tt.kind, tt.modelType)
			d, err := c.Detect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tt.kind || !slices.Equal(d.Capabilities, tt.caps) || len(d.Models) != 1 || d.Models[0].ID != tt.model || !d.Models[0].Loaded {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

func sim(t *testing.T, k probes.Kind, modelType string) *hf.Client {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: k, ModelType: modelType})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	return hf.New(client(t), srv.URL)
}

func TestInference(t *testing.T) {
	ctx := context.Background()
	var req hf.GenerateRequest
	req.Inputs = "hi"
	req.Parameters.MaxNewTokens = 2
	req.Parameters.Details = true
	g, err := sim(t, probes.KindTGI, "").Generate(ctx, req)
	if err != nil || g.GeneratedText != "Hello from" || g.Details == nil || g.Details.GeneratedTokens != 2 {
		t.Fatalf("generate %+v, %v", g, err)
	}
	v, err := sim(t, probes.KindTEI, "").Embed(ctx, []string{"a", "b"})
	if err != nil || len(v) != 2 {
		t.Fatalf("embed %v, %v", v, err)
	}
	r, err := sim(t, probes.KindTEI, "reranker").Rerank(ctx, "cats", []string{"dogs", "cats purr"})
	if err != nil || len(r) != 2 || r[1].Score <= r[0].Score {
		t.Fatalf("rerank %+v, %v", r, err)
	}
	_, err = sim(t, probes.KindTEI, "").Rerank(ctx, "q", []string{"a"})
	if probes.Classify(err) != probes.ClassHTTP4xx {
		t.Fatalf("rerank on an embedding model: %v, want http_4xx", err)
	}
}

func TestDetectNoMatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"model_id":"x"}`))
	}))
	t.Cleanup(srv.Close)
	_, err := hf.New(client(t), srv.URL).Detect(context.Background())
	if !errors.Is(err, probes.ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}
