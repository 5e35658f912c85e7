package extmanager

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/catalog"
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
				if s.Source != catalog.SourceDirectory || s.Manifest != tt.file || s.ID == "" {
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
			if catalog.ValidID(s.ID) != nil || s.Endpoint == "" {
				t.Fatalf("accepted an invalid manifest: %+v", s)
			}
		}
	})
}

func TestManifestDirectoryBounds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		write(id+".yaml", "endpoint: http://127.0.0.1:1\n")
	}
	c := catalog.New(time.Now)
	var bad []string
	d := newDirSource(dir, c, slog.New(slog.DiscardHandler), func(path string, err error) { bad = append(bad, err.Error()) })
	d.maxManifests, d.maxEntries = 3, 6

	d.scan()
	if got := len(c.List(catalog.Filter{})); got != 3 {
		t.Errorf("%d plugins registered from 4 manifests with a limit of 3", got)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "d.yaml: not read: the directory holds more than 3 manifests") {
		t.Errorf("reported %q", bad)
	}

	// Too many entries: reported, and the plugins stay as they were.
	bad = nil
	for _, name := range []string{"x.txt", "y.txt", "z.txt"} {
		write(name, "")
	}
	d.scan()
	if got := len(c.List(catalog.Filter{})); got != 3 {
		t.Errorf("%d plugins after an over-full listing, want the 3 kept", got)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "more than 6 entries") {
		t.Errorf("reported %q", bad)
	}

	// A byte budget: the manifests past it are not read.
	bad = nil
	for _, name := range []string{"x.txt", "y.txt", "z.txt"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	d.maxManifests, d.maxBytes = 10, 60
	d.scan()
	if len(bad) == 0 || !strings.Contains(strings.Join(bad, "\n"), "the most read at once") {
		t.Errorf("reported %q, want manifests past 60 bytes refused", bad)
	}
}

func TestManifestDirectoryThatIsAPipe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins.d")
	if err := syscall.Mkfifo(dir, 0o600); err != nil {
		t.Fatal(err)
	}
	var bad []string
	d := newDirSource(dir, catalog.New(time.Now), slog.New(slog.DiscardHandler), func(path string, err error) { bad = append(bad, err.Error()) })
	done := make(chan struct{})
	go func() { d.scan(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("scanning a named pipe in the directory's place blocked")
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "not a directory") {
		t.Errorf("reported %q", bad)
	}
}
