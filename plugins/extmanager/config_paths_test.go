package extmanager

import (
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/discovery"
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

// VITALS_SHARD sets the shard over the file's, and a bad value names the
// variable; relative file_sd paths resolve beside the config file.
func TestShardFromEnvironment(t *testing.T) {
	reg := agent.NewRegistry()
	if err := reg.Register(Name, Factory); err != nil {
		t.Fatal(err)
	}
	const file = "core:\n  api_gateway:\n    plugins:\n      extmanager:\n        bus: {enabled: false}\n        shard: {count: 2, index: 0}\n        file_sd_configs: [{files: [targets/*.json]}]\n"
	load := func(env map[string]string) (Config, error) {
		cfg, err := agent.Parse(context.Background(), "/etc/vitals/core.yaml", []byte(file), reg, envconfig.MapLookuper(env))
		if err != nil {
			return Config{}, err
		}
		p, err := reg.New(Name, cfg.Plugin(Name).Section)
		if err != nil {
			return Config{}, err
		}
		return p.(*ExtManager).cfg, nil
	}
	cfg, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.shard != (discovery.Shard{Index: 0, Count: 2}) {
		t.Errorf("shard = %+v, want the file's 0/2", cfg.shard)
	}
	if got := cfg.Discovery.FileSDConfigs[0].Files[0]; got != "/etc/vitals/targets/*.json" {
		t.Errorf("file_sd files = %q, want it beside core.yaml", got)
	}
	cfg, err = load(map[string]string{"VITALS_SHARD": "2/3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.shard != (discovery.Shard{Index: 2, Count: 3}) {
		t.Errorf("shard = %+v, want VITALS_SHARD's 2/3", cfg.shard)
	}
	for env, want := range map[string]string{"3/3": "VITALS_SHARD (core.api_gateway.plugins.extmanager.shard): index: must be 0 to 2", "x": "VITALS_SHARD"} {
		if _, err := load(map[string]string{"VITALS_SHARD": env}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("VITALS_SHARD=%s: %v, want %q", env, err, want)
		}
	}
}
