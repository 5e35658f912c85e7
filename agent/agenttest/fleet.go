package agenttest

import (
	"sync"

	"github.com/vitals-dev/vitals/agent"
)

// Spec describes a fake plugin of a Fleet.
type Spec struct {
	Priority     agent.Priority
	Dependencies []string
	Faults       map[string]Fault
	Provides     []string
	Requires     []string
	// NoReload builds a plugin without a Reload method.
	NoReload bool
	// Workers is the plugin's Workers.
	Workers int
}

// FakeConfig is the section a fleet plugin accepts.
type FakeConfig struct {
	Setting string `yaml:"setting"`
	Limit   int    `yaml:"limit"`
}

// Fleet is a set of fake plugins registered under their names. Its factory
// builds a new fake on each call, as real factories do, decoding the
// section strictly (keys setting and limit; limit must not be negative),
// and remembers the latest one built per name.
type Fleet struct {
	Journal *Journal

	mu     sync.Mutex
	specs  map[string]Spec
	latest map[string]*Plugin
	built  map[string]int
}

// NewFleet returns a fleet of the given plugins.
func NewFleet(specs map[string]Spec) *Fleet {
	return &Fleet{Journal: &Journal{}, specs: specs, latest: map[string]*Plugin{}, built: map[string]int{}}
}

// SetFaults changes the faults of plugins built from now on.
func (f *Fleet) SetFaults(name string, faults map[string]Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.specs[name]
	s.Faults = faults
	f.specs[name] = s
}

// Latest returns the newest plugin built under name.
func (f *Fleet) Latest(name string) *Plugin {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest[name]
}

// ReleaseAll ends the hangs of every plugin built.
func (f *Fleet) ReleaseAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.latest {
		p.Release()
	}
}

// Registry returns a registry with every plugin of the fleet.
func (f *Fleet) Registry() *agent.Registry {
	reg := agent.NewRegistry()
	for name := range f.specs {
		name := name
		if err := reg.Register(name, func(s agent.Section) (agent.Plugin, error) { return f.build(name, s) }); err != nil {
			panic(err) // fleet names are the test's own constants
		}
	}
	return reg
}

func (f *Fleet) build(name string, s agent.Section) (agent.Plugin, error) {
	var cfg FakeConfig
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Limit < 0 {
		return nil, s.Errorf("limit", "must not be negative, got %d", cfg.Limit)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	spec := f.specs[name]
	p := New(f.Journal, agent.Metadata{
		Name: name, Description: "fake " + name, Priority: spec.Priority, Dependencies: spec.Dependencies,
	})
	for k, v := range spec.Faults {
		p.Faults[k] = v
	}
	p.Provides, p.Requires, p.Workers = spec.Provides, spec.Requires, spec.Workers
	f.latest[name] = p
	f.built[name]++
	if spec.NoReload {
		return &noReload{p}, nil
	}
	return p, nil
}

// noReload hides Reload, so the host must stop and start the plugin.
type noReload struct{ *Plugin }

// Reload is shadowed so the type has no Reload in its method set.
func (noReload) Reload() {}

var _ agent.Plugin = noReload{}
