package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

func testRegistry() *agent.Registry {
	return agenttest.NewFleet(map[string]agenttest.Spec{
		"alpha": {Priority: agent.PriorityInfrastructure},
		"beta":  {Priority: agent.PriorityBusiness, Dependencies: []string{"alpha"}},
	}).Registry()
}

// Each testdata/invalid-*.yaml starts with "# error: TEXT": loading it must
// fail with an error that contains TEXT.
func TestInvalidConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf("%s does not start with '# error: '", f)
			}
			_, err = agent.Parse(context.Background(), "core.yaml", data, testRegistry(), envconfig.MapLookuper(nil))
			if err == nil {
				t.Fatalf("loaded without error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  %s", err, want)
			}
		})
	}
}

func TestValidConfig(t *testing.T) {
	cfg, err := agent.LoadFile(context.Background(), "testdata/valid-full.yaml", testRegistry(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Core
	if c.Log.Level != "debug" || c.Log.Format != "json" || c.Lifecycle.StepTimeout.D() != 2*time.Second ||
		c.Lifecycle.StopTimeout.D() != 3*time.Second || c.Lifecycle.Readiness != "all" || cfg.Watch() ||
		c.APIGateway.Listen != "127.0.0.1:0" {
		t.Errorf("config = %+v", c)
	}
	alpha, beta := cfg.Plugin("alpha"), cfg.Plugin("beta")
	if !alpha.Enabled || !alpha.Required || alpha.Section.Empty() || !beta.Enabled || beta.Required || !beta.Section.Empty() {
		t.Errorf("alpha = %+v, beta = %+v", alpha, beta)
	}
	var own agenttest.FakeConfig
	if err := alpha.Section.Decode(&own); err != nil || own.Setting != "fast" || own.Limit != 3 {
		t.Errorf("alpha's own keys = %+v, %v", own, err)
	}
	if cfg.Plugin("gamma").Enabled {
		t.Error("a plugin the file does not mention is enabled")
	}
	al := c.Alerting
	if !al.Enabled() || len(al.Alertmanagers) != 2 || al.HTTPConfig.BasicAuth == nil || al.HTTPConfig.BasicAuth.Username != "vitals" ||
		string(al.HTTPConfig.BasicAuth.Password) != "secret" || !al.HTTPConfig.FollowRedirects || al.Labels["instance"] != "node-1:9464" ||
		al.EvaluationInterval.D() != 5*time.Second || al.ResendInterval.D() != 30*time.Second || al.Timeout.D() != 10*time.Second ||
		al.QueueCapacity != 10000 {
		t.Errorf("alerting = %+v", al)
	}
}

func TestDefaultsWhenEmpty(t *testing.T) {
	cfg, err := agent.Parse(context.Background(), "empty.yaml", nil, testRegistry(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	def := agent.DefaultConfig()
	if cfg.Core.APIGateway.Listen != "127.0.0.1:9464" || cfg.Core.Lifecycle.StepTimeout != def.Core.Lifecycle.StepTimeout || !cfg.Watch() ||
		cfg.Core.Alerting.Enabled() {
		t.Errorf("defaults = %+v", cfg.Core)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	data, err := os.ReadFile("testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := envconfig.MapLookuper(map[string]string{
		"VITALS_LOG_LEVEL":        "warn",
		"VITALS_LISTEN_ADDRESS":   "127.0.0.1:19464",
		"VITALS_STEP_TIMEOUT":     "750ms",
		"VITALS_READINESS":        "required",
		"VITALS_PLUGINS_ENABLED":  "beta:false",
		"VITALS_PLUGINS_REQUIRED": "alpha:false",
		"LOG_LEVEL":               "error", // no prefix: ignored
	})
	cfg, err := agent.Parse(context.Background(), "core.yaml", data, testRegistry(), env)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Core
	if c.Log.Level != "warn" || c.APIGateway.Listen != "127.0.0.1:19464" || c.Lifecycle.StepTimeout.D() != 750*time.Millisecond ||
		c.Lifecycle.Readiness != "required" || c.Log.Format != "json" {
		t.Errorf("overridden config = %+v", c)
	}
	if cfg.Plugin("beta").Enabled || cfg.Plugin("alpha").Required || !cfg.Plugin("alpha").Enabled {
		t.Errorf("plugin switches: alpha %+v, beta %+v", cfg.Plugin("alpha"), cfg.Plugin("beta"))
	}

	for name, tt := range map[string]struct{ env, want string }{
		"bad duration": {"VITALS_STOP_TIMEOUT=soon", `environment: VITALS_STOP_TIMEOUT (core.lifecycle.stop_timeout): invalid duration "soon"`},
		"bad bool":     {"VITALS_WATCH_CONFIG=maybe", `environment: VITALS_WATCH_CONFIG (core.lifecycle.watch_config): want true or false, got "maybe"`},
		"bad level":    {"VITALS_LOG_LEVEL=chatty", `environment: VITALS_LOG_LEVEL (core.log.level): unknown level "chatty"`},
		"bad switch":   {"VITALS_PLUGINS_ENABLED=beta:maybe", `environment: VITALS_PLUGINS_ENABLED: want "name:true,other:false", got "beta:maybe"`},
		"unknown name": {"VITALS_PLUGINS_ENABLED=gama:true", `environment: VITALS_PLUGINS_ENABLED (core.api_gateway.plugins.gama): unknown plugin "gama"`},
	} {
		t.Run(name, func(t *testing.T) {
			k, v, _ := strings.Cut(tt.env, "=")
			_, err := agent.Parse(context.Background(), "core.yaml", data, testRegistry(), envconfig.MapLookuper(map[string]string{k: v}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), "core.yaml:") || strings.Contains(err.Error(), "strconv")) {
				t.Errorf("err = %v; a bad variable is the environment's fault, in plain words", err)
			}
		})
	}
}

// TestEveryProblemInOneRun: the problems of a file, several in one
// section, are all reported at once, in the config's words (no Go type
// names), with a suggestion for a misspelt key or plugin.
func TestEveryProblemInOneRun(t *testing.T) {
	text := `core:
  log: {levl: debug, format: yaml}
  lifecycle:
    step_timeout: [1]
  api_gateway:
    plugins:
      alpha:
        setting: [1, 2]
        limit: lots
        limmit: 3
      alpah: {}
`
	env := envconfig.MapLookuper(map[string]string{"VITALS_WATCH_CONFIG": "maybe", "VITALS_STOP_TIMEOUT": "soon"})
	_, err := agent.Parse(context.Background(), "core.yaml", []byte(text), testRegistry(), env)
	if err == nil {
		t.Fatal("a config with eight problems loaded")
	}
	for _, want := range []string{
		`core.yaml:2:9: core.log.levl: unknown key "levl"; did you mean "level"?`,
		`core.yaml:2:22: core.log.format: unknown format "yaml", want text or json`,
		`core.yaml:4:19: core.lifecycle.step_timeout: invalid duration "[1]"`,
		`core.yaml:8:18: core.api_gateway.plugins.alpha.setting: want a string, got a list`,
		`core.yaml:9:16: core.api_gateway.plugins.alpha.limit: want an integer, got "lots"`,
		`core.yaml:10:9: core.api_gateway.plugins.alpha.limmit: unknown key "limmit"; did you mean "limit"?`,
		`core.yaml:11:7: core.api_gateway.plugins.alpah: unknown plugin "alpah"; did you mean "alpha"?`,
		`environment: VITALS_WATCH_CONFIG (core.lifecycle.watch_config): want true or false, got "maybe"`,
		`environment: VITALS_STOP_TIMEOUT (core.lifecycle.stop_timeout): invalid duration "soon"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %s", want)
		}
	}
	for _, leak := range []string{"Go struct", "Go value", "interface {}", "strconv", "of type"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("%q leaks into the message:\n%v", leak, err)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%v", err)
	}
}

// TestDisabledSectionNeedNotBeComplete: a disabled plugin's section is
// checked for keys and types, not for the values its own validation wants.
func TestDisabledSectionNeedNotBeComplete(t *testing.T) {
	head := "core:\n  api_gateway:\n    plugins:\n      alpha:\n        enabled: false\n"
	if _, err := agent.Parse(context.Background(), "core.yaml", []byte(head+"        limit: -1\n"), testRegistry(), envconfig.MapLookuper(nil)); err != nil {
		t.Errorf("a disabled plugin's bad value rejected the config: %v", err)
	}
	for body, want := range map[string]string{
		"        limmit: 1\n":   `core.yaml:6:9: core.api_gateway.plugins.alpha.limmit: unknown key "limmit"`,
		"        limit: lots\n": `core.yaml:6:16: core.api_gateway.plugins.alpha.limit: want an integer, got "lots"`,
	} {
		_, err := agent.Parse(context.Background(), "core.yaml", []byte(head+body), testRegistry(), envconfig.MapLookuper(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}
