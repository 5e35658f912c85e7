package hf_test

import (
	"testing"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/hf"
)

func FuzzDecodeInfo(f *testing.F) {
	for _, s := range []string{written(f, "tgi/info.json"), written(f, "tei/info.json"), teiRank, teiCls, `{}`, `{"model_type":{}}`, `{"max_input_tokens":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i, err := hf.DecodeInfo(b)
		if err != nil {
			return
		}
		if i.Kind() == probes.KindUnknown {
			t.Fatalf("accepted info of unknown kind: %q", b)
		}
		_ = i.Caps()
		_ = i.ContextLength()
	})
}

func FuzzDecodeEmbed(f *testing.F) {
	f.Add([]byte(`[[0.1,0.2],[0.3,0.4]]`))
	f.Add([]byte(`[[]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := hf.DecodeEmbed(b); err == nil && (len(v) == 0 || len(v[0]) == 0) {
			t.Fatal("empty vectors accepted")
		}
	})
}

func FuzzDecodeRerank(f *testing.F) {
	f.Add([]byte(`[{"index":1,"score":0.9},{"index":0,"score":0.1}]`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = hf.DecodeRerank(b) })
}

func FuzzDecodeGenerate(f *testing.F) {
	f.Add([]byte(`{"generated_text":"hi","details":{"finish_reason":"length","generated_tokens":2}}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = hf.DecodeGenerate(b) })
}
