package agent_test

import (
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

func TestSectionResolve(t *testing.T) {
	inFile, err := agent.ParseSection("/etc/vitals/core.yaml", []byte("path: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	relFile, err := agent.ParseSection("conf/core.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	var builtin agent.Section // the built-in config names no file
	for _, tc := range []struct {
		name string
		s    agent.Section
		path string
		want string
	}{
		{"relative, beside the file", inFile, "data/history.db", "/etc/vitals/data/history.db"},
		{"parent of the file's directory", inFile, "../vitals.db", "/etc/vitals.db"},
		{"absolute stays", inFile, "/var/lib/vitals/a.db", "/var/lib/vitals/a.db"},
		{"empty stays", inFile, "", ""},
		{"SQLite's in-memory name stays", inFile, ":memory:", ":memory:"},
		{"a relative config file", relFile, "keys/k1", "conf/keys/k1"},
		{"the built-in config: the working directory", builtin, "data/a.db", "data/a.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Resolve(tc.path); got != tc.want {
				t.Errorf("Resolve(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}
