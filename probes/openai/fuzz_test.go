package openai_test

import (
	"bytes"
	"testing"

	"github.com/vitals-dev/vitals/probes/openai"
)

func seeds(f *testing.F, files ...string) {
	for _, name := range files {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"data":[{"id":"x","meta":{"n_ctx_train":-1}}]}`))
}

func FuzzDecodeModels(f *testing.F) {
	seeds(f, "llamacpp/v1_models.json", "llamacpp/embed_v1_models.json", "ollama/v1_models.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := openai.DecodeModels(b)
		if err != nil {
			return
		}
		for _, m := range l.Data {
			if m.ID == "" {
				t.Fatalf("decoded a model without id from %q", b)
			}
		}
		_ = openai.Flavor(l)
	})
}

func FuzzDecodeVersion(f *testing.F) {
	f.Add([]byte(`{"version":"0.6.3"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := openai.DecodeVersion(b)
		if err == nil && v == "" {
			t.Fatal("empty version accepted")
		}
	})
}

func FuzzDecodeEmbeddings(f *testing.F) {
	seeds(f, "llamacpp/embed_embeddings.json", "llamacpp/embeddings_not_supported.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := openai.DecodeEmbeddings(b)
		if err == nil && (len(e.Data) == 0 || len(e.Data[0].Embedding) == 0) {
			t.Fatal("embeddings without vectors accepted")
		}
	})
}

func FuzzReadStream(f *testing.F) {
	seeds(f, "llamacpp/chat_completions_stream.txt")
	f.Add([]byte("data: [DONE]\n"))
	f.Add([]byte("event: x\ndata: {\"error\":null}\n\ndata: [DONE]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = openai.ReadStream(bytes.NewReader(b), func(c openai.ChatChunk) error {
			_ = c.Content()
			return nil
		})
	})
}
