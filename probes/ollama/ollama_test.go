package ollama_test

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
	"github.com/vitals-dev/vitals/probes/ollama"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var peers = filepath.Join("..", "testdata", "peers")

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(peers, name))
	if err != nil {
		t.Fatalf("recorded fixture (probes/testdata/peers): %v", err)
	}
	return b
}

func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestDecodeFixtures(t *testing.T) {
	v, err := ollama.DecodeVersion(fixture(t, "ollama/api_version.json"))
	if err != nil || v != "0.24.0" {
		t.Fatalf("version %q, %v", v, err)
	}
	tags, err := ollama.DecodeTags(fixture(t, "ollama/api_tags.json"))
	if err != nil || len(tags) != 1 || tags[0].Name != "tiny:latest" || tags[0].Size != 550336 {
		t.Fatalf("tags %+v, %v", tags, err)
	}
	ps, err := ollama.DecodePS(fixture(t, "ollama/api_ps_idle.json"))
	if err != nil || len(ps) != 0 {
		t.Fatalf("ps idle %+v, %v", ps, err)
	}
	ps, err = ollama.DecodePS(fixture(t, "ollama/api_ps_loaded.json"))
	if err != nil || len(ps) != 1 || ps[0].Size != 1482496 || ps[0].ContextLength != 2048 {
		t.Fatalf("ps loaded %+v, %v", ps, err)
	}
	show, err := ollama.DecodeShow(fixture(t, "ollama/api_show.json"))
	if err != nil || show.ContextLength() != 2048 {
		t.Fatalf("show ctx %d, %v", show.ContextLength(), err)
	}
	if got, want := show.Caps(), []probes.Capability{probes.CapChat, probes.CapCompletion}; !slices.Equal(got, want) {
		t.Fatalf("caps %v, want %v", got, want)
	}
	emb, err := ollama.DecodeEmbed(fixture(t, "ollama/api_embed.json"))
	if err != nil || len(emb.Embeddings) != 1 || len(emb.Embeddings[0]) != 64 {
		t.Fatalf("embed %v", err)
	}
}

func TestShowCaps(t *testing.T) {
	tests := []struct {
		name string
		show ollama.Show
		want []probes.Capability
	}{
		{"all", ollama.Show{Capabilities: []string{"completion", "vision", "tools", "thinking", "insert"}},
			[]probes.Capability{probes.CapChat, probes.CapCompletion, probes.CapVision, probes.CapTools}},
		{"embedding", ollama.Show{Capabilities: []string{"embedding"}}, []probes.Capability{probes.CapEmbeddings}},
		{"old bert", ollama.Show{Details: ollama.Details{Family: "nomic-bert"}}, []probes.Capability{probes.CapEmbeddings}},
		{"old llama", ollama.Show{Details: ollama.Details{Family: "llama"}}, []probes.Capability{probes.CapChat, probes.CapCompletion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.show.Caps(); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func([]byte) error
		body string
	}{
		{"version empty", func(b []byte) error { _, err := ollama.DecodeVersion(b); return err }, `{}`},
		{"version text", func(b []byte) error { _, err := ollama.DecodeVersion(b); return err }, string(fixture(t, "ollama/root.txt"))},
		{"tags no list", func(b []byte) error { _, err := ollama.DecodeTags(b); return err }, `{"version":"1"}`},
		{"tags nameless", func(b []byte) error { _, err := ollama.DecodeTags(b); return err }, `{"models":[{}]}`},
		{"ps no list", func(b []byte) error { _, err := ollama.DecodePS(b); return err }, `{}`},
		{"show empty", func(b []byte) error { _, err := ollama.DecodeShow(b); return err }, `{}`},
		{"embed empty", func(b []byte) error { _, err := ollama.DecodeEmbed(b); return err }, `{"embeddings":[[]]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn([]byte(tt.body)); probes.Classify(err) != probes.ClassBadResponse {
				t.Fatalf("err = %v, want bad_response", err)
			}
		})
	}
}

func TestReadStream(t *testing.T) {
	good := `{"model":"m","response":"a","done":false}` + "\n\n" + `{"model":"m","response":"b","done":true,"eval_count":2}` + "\n"
	var text string
	if err := ollama.ReadStream(strings.NewReader(good), func(r ollama.Response) error { text += r.Text(); return nil }); err != nil || text != "ab" {
		t.Fatalf("text %q, %v", text, err)
	}
	for name, body := range map[string]string{
		"truncated": `{"response":"a","done":false}` + "\n",
		"error":     `{"error":"model 'x' not found"}` + "\n",
		"garbage":   "not json\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := ollama.ReadStream(strings.NewReader(body), func(ollama.Response) error { return nil }); probes.Classify(err) != probes.ClassBadResponse {
				t.Fatalf("err = %v, want bad_response", err)
			}
		})
	}
}

func sim(t *testing.T) (*aisim.Server, *ollama.Client) {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	return s, ollama.New(client(t), srv.URL)
}

func TestDetect(t *testing.T) {
	_, c := sim(t)
	ctx := context.Background()
	d, err := c.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []probes.Capability{probes.CapChat, probes.CapCompletion, probes.CapEmbeddings, probes.CapVision, probes.CapTools}
	if d.Kind != probes.KindOllama || d.Version != "0.24.0" || !slices.Equal(d.Capabilities, want) || len(d.Models) != 3 {
		t.Fatalf("got %+v", d)
	}
	if d.Models[0].Loaded || d.Models[0].ContextLength != 2048 || d.Models[0].SizeBytes != 550336 {
		t.Fatalf("model before a request: %+v", d.Models[0])
	}
	// A request loads the model: /api/ps then reports its memory.
	if _, err := c.ChatStream(ctx, ollama.ChatRequest{Model: "tiny", Messages: []ollama.Message{{Role: "user", Content: "hi"}}}); err != nil {
		t.Fatal(err)
	}
	d, err = c.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := d.Models[0]; !m.Loaded || m.MemoryBytes != 1482496 {
		t.Fatalf("model after a request: %+v", m)
	}
}

func TestDetectNoMatch(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := ollama.New(client(t), srv.URL).Detect(context.Background())
	if !errors.Is(err, probes.ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}

func TestInference(t *testing.T) {
	s, c := sim(t)
	ctx := context.Background()
	s.SetSlowFirstToken(20 * time.Millisecond)
	st, err := c.ChatStream(ctx, ollama.ChatRequest{Model: "tiny", Messages: []ollama.Message{{Role: "user", Content: "hi there"}},
		Options: map[string]any{"num_predict": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Content != "Hello from" || st.Final.EvalCount != 2 || st.Final.PromptEvalCount != 2 || st.TimeToFirstToken < 20*time.Millisecond {
		t.Fatalf("stream %+v", st)
	}
	e, err := c.Embed(ctx, ollama.EmbedRequest{Model: "tiny-embed", Input: []string{"a", "b"}})
	if err != nil || len(e.Embeddings) != 2 {
		t.Fatalf("embed %+v, %v", e, err)
	}
	_, err = c.ChatStream(ctx, ollama.ChatRequest{Model: "nope", Messages: []ollama.Message{{Role: "user", Content: "x"}}})
	var he *probes.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("unknown model: %v", err)
	}
}

// The weights blob comes from the FROM line of the modelfile a real
// Ollama shows, and differs from the manifest digest its /api/ps lists.
func TestShowBlobDigest(t *testing.T) {
	show, err := ollama.DecodeShow(fixture(t, "ollama/api_show.json"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "sha256:73a0efbde1c8ac14aee55adefa66d7f26c62f9548a978daa8526722fe73fa0f4"
	if got := show.BlobDigest(); got != want {
		t.Fatalf("blob digest %q, want %q", got, want)
	}
	ps, err := ollama.DecodePSSignals(fixture(t, "ollama/api_ps_loaded.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d := ps.LoadedModels[0].Digest; d == "" || strings.HasSuffix(want, d) {
		t.Fatalf("/api/ps digest %q: the recording should list the manifest's, not the blob's", d)
	}
	for _, mf := range []string{"", "FROM tiny:latest\n", "FROM /x/blobs/sha256-abc\n"} {
		if got := (ollama.Show{Modelfile: mf}).BlobDigest(); got != "" {
			t.Errorf("modelfile %q: blob digest %q, want none", mf, got)
		}
	}
}
