package agenttest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

// ConfigFiles checks a plugin's config testdata: every file of invalid (a
// name in testdata/, mapped to text its error must contain) is rejected by
// the factory with that text, and testdata/sample.yaml, if there is one,
// builds. It returns the plugin built from the sample, or nil.
func ConfigFiles(t *testing.T, f agent.Factory, invalid map[string]string) agent.Plugin {
	t.Helper()
	build := func(name string) (agent.Plugin, error) {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		s, err := agent.ParseSection(name, data)
		if err != nil {
			return nil, err
		}
		return f(s)
	}
	names := make([]string, 0, len(invalid))
	for name := range invalid {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if _, err := build(name); err == nil || !strings.Contains(err.Error(), invalid[name]) {
				t.Errorf("err = %v, want it to contain %q", err, invalid[name])
			}
		})
	}
	if _, err := os.Stat(filepath.Join("testdata", "sample.yaml")); err != nil {
		return nil
	}
	p, err := build("sample.yaml")
	if err != nil {
		t.Fatalf("testdata/sample.yaml: %v", err)
	}
	return p
}
