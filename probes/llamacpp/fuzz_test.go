package llamacpp_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vitals-dev/vitals/probes/llamacpp"
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
	seeds(f, "llamacpp/v1_models.json", "llamacpp/embed_v1_models.json")
	router, err := os.ReadFile(filepath.Join("testdata", "router-models.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(router)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := llamacpp.DecodeModels(b)
		if err != nil {
			return
		}
		for _, m := range l.Data {
			if m.ID == "" {
				t.Fatalf("decoded a model without id from %q", b)
			}
			if m.Status != nil && m.State() == "" {
				t.Fatalf("decoded a status without a value from %q", b)
			}
		}
		_ = l.Written()
	})
}

func FuzzDecodeProps(f *testing.F) {
	seeds(f, "llamacpp/props.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := llamacpp.DecodeProps(b)
		if err == nil && p.BuildInfo == "" && p.ModelPath == "" && p.ModelAlias == "" {
			t.Fatalf("accepted props without identity: %q", b)
		}
	})
}

func FuzzDecodeHealth(f *testing.F) {
	seeds(f, "llamacpp/health.json")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = llamacpp.DecodeHealth(b) })
}
