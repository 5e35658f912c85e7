package kserve_test

import (
	"testing"

	"github.com/vitals-dev/vitals/probes/kserve"
)

func FuzzDecodeServerMetadata(f *testing.F) {
	f.Add(written(f, "v2.json"))
	f.Add([]byte(`{"name":"kserve","version":"0.13"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := kserve.DecodeServerMetadata(b); err == nil && (m.Name == "" || m.Version == "") {
			t.Fatal("metadata without name or version accepted")
		}
	})
}

func FuzzDecodeModelMetadata(f *testing.F) {
	f.Add(written(f, "v2_models_bert.json"))
	f.Add([]byte(`{"name":"m","inputs":[{"name":"text_input"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kserve.DecodeModelMetadata(b)
		if err == nil {
			_ = m.Caps()
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add([]byte(index))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = kserve.DecodeIndex(b) })
}

func FuzzDecodeInfer(f *testing.F) {
	f.Add([]byte(`{"model_name":"m","outputs":[{"name":"o","datatype":"FP32","shape":[1,2],"data":[0.1,0.2]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = kserve.DecodeInfer(b) })
}
