package agent_test

import (
	"context"
	"fmt"

	"github.com/vitals-dev/vitals/agent"
)

// greeter is a minimal plugin: it embeds agent.Base for its metadata and
// state, and reads its own config keys from its section.
type greeter struct {
	agent.Base
	cfg greeterConfig
}

type greeterConfig struct {
	Greeting string `yaml:"greeting"`
}

func newGreeter(s agent.Section) (agent.Plugin, error) {
	cfg := greeterConfig{Greeting: "hello"}
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Greeting == "" {
		return nil, s.Errorf("greeting", "must not be empty")
	}
	return &greeter{
		Base: agent.NewBase(agent.Metadata{Name: "greeter", Version: "1.0.0", Description: "says hello", Priority: agent.PriorityBusiness}),
		cfg:  cfg,
	}, nil
}

func (g *greeter) Initialize(ctx context.Context, h agent.Host) error {
	return h.Provide("greeting", g.cfg.Greeting)
}
func (g *greeter) Start(context.Context) error { fmt.Println("greeter started"); return nil }
func (g *greeter) Stop(context.Context) error  { fmt.Println("greeter stopped"); return nil }

func ExampleManager() {
	reg := agent.NewRegistry()
	if err := reg.Register("greeter", newGreeter); err != nil {
		panic(err)
	}
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte(`
core:
  api_gateway:
    plugins:
      greeter:
        greeting: good morning
`), reg, nil)
	if err != nil {
		panic(err)
	}
	m := agent.NewManager(agent.ManagerOptions{Registry: reg})
	if err := m.Start(context.Background(), cfg); err != nil {
		panic(err)
	}
	greeting, _ := agent.Require[string](context.Background(), m.Container(), "greeting")
	fmt.Println(greeting)
	_ = m.Stop(context.Background())
	// Output:
	// greeter started
	// good morning
	// greeter stopped
}

func ExampleParse_error() {
	reg := agent.NewRegistry()
	_ = reg.Register("greeter", newGreeter)
	_, err := agent.Parse(context.Background(), "core.yaml", []byte(`
core:
  api_gateway:
    plugins:
      greeter:
        greeting: ""
`), reg, nil)
	fmt.Println(err)
	// Output:
	// core.yaml:6:9: core.api_gateway.plugins.greeter.greeting: must not be empty
}
