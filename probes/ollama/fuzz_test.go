package ollama_test

import (
	"bytes"
	"testing"

	"github.com/vitals-dev/vitals/probes/ollama"
)

func seeds(f *testing.F, files ...string) {
	for _, name := range files {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
}

func FuzzDecodeVersion(f *testing.F) {
	seeds(f, "ollama/api_version.json", "ollama/root.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ollama.DecodeVersion(b); err == nil && v == "" {
			t.Fatal("empty version accepted")
		}
	})
}

func FuzzDecodeTags(f *testing.F) {
	seeds(f, "ollama/api_tags.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		tags, err := ollama.DecodeTags(b)
		if err != nil {
			return
		}
		for _, m := range tags {
			if m.Name == "" && m.Model == "" {
				t.Fatal("nameless model accepted")
			}
		}
	})
}

func FuzzDecodePS(f *testing.F) {
	seeds(f, "ollama/api_ps_idle.json", "ollama/api_ps_loaded.json")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ollama.DecodePS(b) })
}

func FuzzDecodeShow(f *testing.F) {
	seeds(f, "ollama/api_show.json")
	f.Add([]byte(`{"model_info":{"general.architecture":"x","x.context_length":1e300}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ollama.DecodeShow(b)
		if err != nil {
			return
		}
		if n := s.ContextLength(); n < 0 {
			t.Fatalf("negative context length %d", n)
		}
		_ = s.Caps()
	})
}

func FuzzDecodeEmbed(f *testing.F) {
	seeds(f, "ollama/api_embed.json")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ollama.DecodeEmbed(b) })
}

func FuzzReadStream(f *testing.F) {
	f.Add([]byte(`{"response":"a","done":false}` + "\n" + `{"done":true}` + "\n"))
	f.Add([]byte(`{"message":{"role":"assistant","content":"x"},"done":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ollama.ReadStream(bytes.NewReader(b), func(r ollama.Response) error { _ = r.Text(); return nil })
	})
}
