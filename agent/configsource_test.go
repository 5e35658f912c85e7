package agent_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// TestSectionAfterItsTreeIsGone: a config file's plugin section keeps the
// file's text, not its parsed tree; once the tree is collected, the section
// still decodes the same values (an anchored mapping and an alias among
// them), compares equal to itself and to a fresh parse, and its errors
// name the line of the key.
func TestSectionAfterItsTreeIsGone(t *testing.T) {
	const text = `core:
  api_gateway:
    plugins:
      alpha:
        enabled: true
        targets:
          - id: one
            endpoint: http://127.0.0.1:1
          - id: two
            endpoint: http://127.0.0.1:2
      beta: &beta
        name: b
        targets: &targets
          - id: one
        more: *targets
`
	parse := func() *agent.Config {
		cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(text), nil, envconfig.MapLookuper(nil))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := parse()
	type target struct {
		ID       string `yaml:"id"`
		Endpoint string `yaml:"endpoint"`
	}
	type section struct {
		Name    string   `yaml:"name"`
		Targets []target `yaml:"targets"`
		More    []target `yaml:"more"`
	}
	for range 2 {
		runtime.GC() // twice: the weak pointer is cleared by the first
	}
	var a, b section
	if err := cfg.Plugin("alpha").Section.Decode(&a); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Plugin("beta").Section.Decode(&b); err != nil {
		t.Fatal(err)
	}
	if len(a.Targets) != 2 || a.Targets[1].Endpoint != "http://127.0.0.1:2" || b.Name != "b" || len(b.More) != 1 || b.More[0].ID != "one" {
		t.Fatalf("decoded alpha %+v, beta %+v", a, b)
	}
	runtime.GC()
	runtime.GC()
	s := cfg.Plugin("alpha").Section
	if s.Empty() || !s.Equal(s) || !s.Equal(parse().Plugin("alpha").Section) || s.Equal(cfg.Plugin("beta").Section) {
		t.Fatal("Equal: want a section equal to itself and a fresh parse of it, and not to another")
	}
	runtime.GC()
	runtime.GC()
	err := s.Errorf("targets[1].endpoint", "port %d is not allowed", 2)
	if !strings.HasPrefix(err.Error(), "core.yaml:10:") || !strings.Contains(err.Error(), "port 2 is not allowed") {
		t.Fatalf("Errorf = %q, want the line of the key", err)
	}
}

// TestConfigHoldsItsTextNotItsTree: a parsed config of 1000 targets holds
// about its text, not the YAML tree (2.9 KiB a target when it kept it,
// which is most of what a config target cost the agent).
func TestConfigHoldsItsTextNotItsTree(t *testing.T) {
	var b strings.Builder
	b.WriteString("core:\n  api_gateway:\n    plugins:\n      alpha:\n        targets:\n")
	const n = 1000
	for i := range n {
		fmt.Fprintf(&b, "          - id: t%04d\n            endpoint: http://127.0.0.1:%d\n            kind: openai\n", i, 10000+i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(b.String()), nil, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	runtime.KeepAlive(cfg)
	if perTarget := held / n; perTarget > 512 {
		t.Errorf("the config holds %.0f bytes a target (its text is %d bytes in all); want at most 512", perTarget, b.Len())
	}
}
