package extmanager

import (
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name, file, text string
		want             string // error text; "" for valid
	}{
		{"minimal, id from file name", "plugins.d/local-llm.yaml", "endpoint: http://127.0.0.1:8080\n", ""},
		{"full", "d/x.yaml", "id: ollama-1\nendpoint: http://127.0.0.1:11434\nkind: ollama\nmodel: llama3.2:1b\nlabels: {team: a}\ndepends_on: [embedder]\n", ""},
		{"unknown key", "d/x.yaml", "endpoint: http://127.0.0.1:1\nendpiont: x\n", `d/x.yaml:2:1: endpiont: unknown key "endpiont"; did you mean "endpoint"?`},
		{"no endpoint", "d/x.yaml", "kind: auto\n", "d/x.yaml: endpoint: required"},
		{"bad endpoint", "d/x.yaml", "endpoint: ftp://host/\n", `d/x.yaml:1:1: endpoint: "ftp://host/" is not an http(s) URL`},
		{"bad kind", "d/x.yaml", "endpoint: http://127.0.0.1:1\nkind: gpt\n", "d/x.yaml:2:1: kind:"},
		{"bad id", "d/x.yaml", "id: Big Model\nendpoint: http://127.0.0.1:1\n", `d/x.yaml:1:1: id: invalid id "Big Model"`},
		{"wrong type", "d/x.yaml", "endpoint: http://127.0.0.1:1\npid: lots\n", "d/x.yaml:2:6: pid:"},
		{"not a mapping", "d/x.yaml", "- endpoint: x\n", "d/x.yaml:1:1: want a mapping of keys"},
		{"empty", "d/x.yaml", "", "d/x.yaml: empty manifest"},
		{"syntax", "d/x.yaml", "endpoint: [\n", "d/x.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseManifest(tt.file, []byte(tt.text))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Source != SourceDirectory || s.Manifest != tt.file || s.ID == "" {
					t.Errorf("spec = %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	s, _ := ParseManifest("plugins.d/local-llm.yaml", []byte("endpoint: http://127.0.0.1:8080\n"))
	if s.ID != "local-llm" || s.Kind != probes.KindAuto {
		t.Errorf("defaults: %+v", s)
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		"endpoint: http://127.0.0.1:8080\n",
		"id: a\nendpoint: http://h:1\nkind: ollama\nlabels: {a: b}\ndepends_on: [x]\n",
		"- a\n", "endpoint: [\n", "", "pid: -1\nendpoint: http://h:1\n", "a: &x 1\nb: *x\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseManifest("f.yaml", []byte(text))
		if err == nil {
			if ValidID(s.ID) != nil || s.Endpoint == "" {
				t.Fatalf("accepted an invalid manifest: %+v", s)
			}
		}
	})
}
