package extmanager

import (
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

// The paths the config names resolve beside the config file, and
// history.path ":memory:" keeps SQLite's in-memory database rather than
// naming a file ":memory:" there.
func TestConfigPathsResolveBesideTheFile(t *testing.T) {
	for _, tc := range []struct {
		history, wantHistory string
	}{
		{"history.db", "/etc/vitals/history.db"},
		{"/var/lib/vitals/history.db", "/var/lib/vitals/history.db"},
		{":memory:", ":memory:"},
		{"", ""},
	} {
		s, err := agent.ParseSection("/etc/vitals/core.yaml", []byte("directory: plugins.d\nhealth:\n  history:\n    path: \""+tc.history+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := decodeConfig(s)
		if err != nil {
			t.Fatalf("history.path %q: %v", tc.history, err)
		}
		if cfg.Health.History.Path != tc.wantHistory {
			t.Errorf("history.path %q resolved to %q, want %q", tc.history, cfg.Health.History.Path, tc.wantHistory)
		}
		if cfg.Directory != "/etc/vitals/plugins.d" {
			t.Errorf("directory resolved to %q", cfg.Directory)
		}
	}
}
