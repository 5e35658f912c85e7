package agent

import (
	"fmt"
	"sort"
	"sync"
)

// Factory builds a plugin from its config section. It decodes and validates
// the section and allocates nothing that needs releasing: the host also
// calls it to check a config it may never run.
type Factory func(s Section) (Plugin, error)

// Registry maps plugin names to factories. Build one in main and register
// the plugins the binary ships; there is no global registry.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a factory. An invalid or duplicate name, or a nil factory,
// is an error.
func (r *Registry) Register(name string, f Factory) error {
	if !ValidName(name) {
		return fmt.Errorf("register plugin %q: invalid name, want %s", name, nameRE)
	}
	if f == nil {
		return fmt.Errorf("register plugin %q: nil factory", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("register plugin %q: already registered", name)
	}
	r.factories[name] = f
	return nil
}

// Has reports whether name is registered.
func (r *Registry) Has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.factories[name]
	return ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds the named plugin from its section. The plugin's metadata must
// carry the name it was registered under.
func (r *Registry) New(name string, s Section) (p Plugin, err error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("plugin %q is not registered", name)
	}
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("plugin %q: factory panicked: %v", name, v)
		}
	}()
	p, err = f(s)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("plugin %q: factory returned nil", name)
	}
	if got := p.Metadata().Name; got != name {
		return nil, fmt.Errorf("plugin %q: factory built a plugin named %q", name, got)
	}
	return p, nil
}
