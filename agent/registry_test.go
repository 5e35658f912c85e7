package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

func TestRegistry(t *testing.T) {
	ok := func(name string) agent.Factory {
		return func(agent.Section) (agent.Plugin, error) {
			return agenttest.New(nil, agent.Metadata{Name: name}), nil
		}
	}
	reg := agent.NewRegistry()
	if err := reg.Register("bus", ok("bus")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		plugin  string
		factory agent.Factory
		want    string
	}{
		{"duplicate", "bus", ok("bus"), `register plugin "bus": already registered`},
		{"uppercase", "Bus", ok("Bus"), "invalid name"},
		{"leading digit", "1bus", ok("1bus"), "invalid name"},
		{"dash", "my-bus", ok("my-bus"), "invalid name"},
		{"empty", "", ok(""), "invalid name"},
		{"too long", "a" + strings.Repeat("b", 63), ok("x"), "invalid name"},
		{"nil factory", "other", nil, "nil factory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.Register(tt.plugin, tt.factory)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if err := reg.Register("a"+strings.Repeat("b", 62), ok("x")); err != nil {
		t.Errorf("63-character name rejected: %v", err)
	}
	if err := reg.Register("liar", ok("other")); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.New("liar", agent.Section{}); err == nil || !strings.Contains(err.Error(), `built a plugin named "other"`) {
		t.Errorf("New(liar) err = %v", err)
	}
	if err := reg.Register("panicky", func(agent.Section) (agent.Plugin, error) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.New("panicky", agent.Section{}); err == nil || !strings.Contains(err.Error(), "factory panicked: boom") {
		t.Errorf("New(panicky) err = %v", err)
	}
	if _, err := reg.New("nope", agent.Section{}); err == nil {
		t.Error("New(nope) succeeded")
	}
	if got := strings.Join(reg.Names(), ","); got != "abbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,bus,liar,panicky" {
		t.Errorf("Names() = %s", got)
	}
}

func TestFactoryDecodesSection(t *testing.T) {
	fleet := agenttest.NewFleet(map[string]agenttest.Spec{"fake": {}})
	reg := fleet.Registry()
	s, err := agent.NewSection("setting: hello\nlimit: 3\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.New("fake", s); err != nil {
		t.Fatal(err)
	}
	bad, _ := agent.NewSection("setting: x\nlimmit: 3\n")
	if _, err := reg.New("fake", bad); err == nil || !strings.Contains(err.Error(), `<section>:2:1: section.limmit: unknown key "limmit"; did you mean "limit"?`) {
		t.Errorf("unknown key err = %v", err)
	}
	_ = context.Background()
}
