package openai_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
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

// written reads a body written from an engine's documentation, not
// recorded, in probes/testdata/written (its README names the sources).
func written(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "written", name))
	if err != nil {
		t.Fatalf("written fixture (probes/testdata/written): %v", err)
	}
	return b
}

func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestDecodeModelsFixtures(t *testing.T) {
	tests := []struct {
		file   string
		flavor probes.Kind
		id     string
	}{
		{"llamacpp/v1_models.json", probes.KindOpenAI, "tiny"},
		{"llamacpp/embed_v1_models.json", probes.KindOpenAI, "tiny-embed"},
		{"ollama/v1_models.json", probes.KindOpenAI, "tiny:latest"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			l, err := openai.DecodeModels(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Data) != 1 || l.Data[0].ID != tt.id {
				t.Fatalf("models %+v, want one %q", l.Data, tt.id)
			}
			if got := openai.Flavor(l); got != tt.flavor {
				t.Fatalf("Flavor = %s, want %s", got, tt.flavor)
			}
		})
	}
}

func TestDecodeModelsVLLM(t *testing.T) {
	l, err := openai.DecodeModels(written(t, "vllm/v1_models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if openai.Flavor(l) != probes.KindVLLM || l.Data[0].MaxModelLen != 32768 {
		t.Fatalf("got %+v", l)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func([]byte) error
		body string
	}{
		{"models no data", func(b []byte) error { _, err := openai.DecodeModels(b); return err }, `{"object":"list"}`},
		{"models no id", func(b []byte) error { _, err := openai.DecodeModels(b); return err }, `{"data":[{"object":"model"}]}`},
		{"models html", func(b []byte) error { _, err := openai.DecodeModels(b); return err }, `<html></html>`},
		{"version empty", func(b []byte) error { _, err := openai.DecodeVersion(b); return err }, `{"version":""}`},
		{"embeddings 501 body", func(b []byte) error { _, err := openai.DecodeEmbeddings(b); return err }, string(fixture(t, "llamacpp/embeddings_not_supported.json"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fn([]byte(tt.body))
			var de *probes.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *probes.DecodeError", err)
			}
		})
	}
}

func TestDecodeFixtures(t *testing.T) {
	e, err := openai.DecodeEmbeddings(fixture(t, "llamacpp/embed_embeddings.json"))
	if err != nil || len(e.Data[0].Embedding) != 64 || e.Usage.PromptTokens != 3 {
		t.Fatalf("embeddings %+v, %v", e.Usage, err)
	}
}

func TestReadStreamFixture(t *testing.T) {
	var content strings.Builder
	var usage *openai.Usage
	n := 0
	err := openai.ReadStream(strings.NewReader(string(fixture(t, "llamacpp/chat_completions_stream.txt"))), func(c openai.ChatChunk) error {
		n++
		content.WriteString(c.Content())
		if c.Usage != nil {
			usage = c.Usage
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 || content.String() != " o okh*" || usage == nil || usage.CompletionTokens != 4 {
		t.Fatalf("chunks %d, content %q, usage %+v", n, content.String(), usage)
	}
}

func TestReadStreamErrors(t *testing.T) {
	tests := map[string]string{
		"no done":     "data: {\"choices\":[]}\n\n",
		"not json":    "data: {oops\n\n",
		"error event": "data: {\"error\":{\"message\":\"boom\"}}\n\n",
		"empty":       "",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			err := openai.ReadStream(strings.NewReader(body), func(openai.ChatChunk) error { return nil })
			if probes.Classify(err) != probes.ClassBadResponse {
				t.Fatalf("err = %v, want bad_response", err)
			}
		})
	}
	stop := errors.New("stop")
	err := openai.ReadStream(strings.NewReader("data: {}\n\ndata: [DONE]\n"), func(openai.ChatChunk) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("callback error lost: %v", err)
	}
}

// sim starts an aisim server of kind k.
func sim(t *testing.T, k probes.Kind, mut func(*aisim.Config)) (*aisim.Server, *openai.Client) {
	t.Helper()
	cfg := aisim.Config{Kind: k}
	if mut != nil {
		mut(&cfg)
	}
	s, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	return s, openai.New(client(t), srv.URL)
}

func TestDetect(t *testing.T) {
	tests := []struct {
		kind    probes.Kind
		mut     func(*aisim.Config)
		want    probes.Kind
		version string
		caps    []probes.Capability
		models  []string
	}{
		// Several models: none is asked, so none has known capabilities.
		{probes.KindOpenAI, nil, probes.KindOpenAI, "", nil, []string{"sim-chat", "sim-embed"}},
		// llama.cpp's list is an OpenAI one; probes/llamacpp tells it apart.
		{probes.KindLlamaCpp, nil, probes.KindOpenAI, "", []probes.Capability{probes.CapChat, probes.CapCompletion}, []string{"tiny"}},
		{probes.KindVLLM, nil, probes.KindVLLM, "0.6.3", []probes.Capability{probes.CapChat, probes.CapCompletion}, []string{"sim-chat"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"/"+strings.Join(tt.models, ","), func(t *testing.T) {
			_, c := sim(t, tt.kind, tt.mut)
			d, err := c.Detect(context.Background(), true)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range d.Models {
				ids = append(ids, m.ID)
			}
			if d.Kind != tt.want || d.Version != tt.version || !slices.Equal(d.Capabilities, tt.caps) || !slices.Equal(ids, tt.models) {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

func TestDetectNoMatch(t *testing.T) {
	_, c := sim(t, probes.KindOllama, nil)
	c.BaseURL += "/nothing-here"
	_, err := c.Detect(context.Background(), true)
	if !errors.Is(err, probes.ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}

func TestInference(t *testing.T) {
	for _, k := range []probes.Kind{probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama, probes.KindTGI} {
		t.Run(string(k), func(t *testing.T) {
			_, c := sim(t, k, nil)
			ctx := context.Background()
			req := openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "say hi"}}, MaxTokens: 3}
			st, err := c.ChatStream(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if st.Content != "Hello from aisim" || st.Usage == nil || st.Usage.CompletionTokens != 3 || st.Usage.PromptTokens != 2 || st.TimeToFirstToken <= 0 {
				t.Fatalf("stream %+v", st)
			}
		})
	}
}

func TestEmbeddings(t *testing.T) {
	_, c := sim(t, probes.KindOpenAI, nil)
	r, err := c.Embeddings(context.Background(), openai.EmbeddingsRequest{Model: "sim-embed", Input: []string{"a", "b c"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Data) != 2 || len(r.Data[0].Embedding) == 0 || r.Usage.PromptTokens != 3 {
		t.Fatalf("got %+v", r)
	}
	_, lc := sim(t, probes.KindLlamaCpp, nil)
	_, err = lc.Embeddings(context.Background(), openai.EmbeddingsRequest{Input: []string{"a"}})
	var he *probes.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotImplemented {
		t.Fatalf("llama.cpp without embeddings: %v, want a 501", err)
	}
}

func TestChatStreamTimeToFirstToken(t *testing.T) {
	s, c := sim(t, probes.KindLlamaCpp, nil)
	s.SetSlowFirstToken(30 * time.Millisecond)
	st, err := c.ChatStream(context.Background(), openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if st.TimeToFirstToken < 30*time.Millisecond {
		t.Fatalf("time to first token %v, want >= 30ms", st.TimeToFirstToken)
	}
}

func TestChatStreamErrors(t *testing.T) {
	s, c := sim(t, probes.KindVLLM, nil)
	s.SetErrorRate(1)
	_, err := c.ChatStream(context.Background(), openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "hi"}}})
	if probes.Classify(err) != probes.ClassHTTP5xx {
		t.Fatalf("err = %v, want http_5xx", err)
	}
	s.SetErrorRate(0)
	s.SetStuck(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = c.ChatStream(ctx, openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "hi"}}})
	if probes.Classify(err) != probes.ClassTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
}
