package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// pluginRegistry hands each plugin its own Registerer over the agent's
// registry (Host.Metrics), which remembers what the plugin registered, so
// that the host unregisters a plugin's collectors when it stops or fails to
// initialize: a plugin started again after a reload or an enable registers
// afresh, without cleaning up itself.
type pluginRegistry struct {
	parent prometheus.Registerer // the agent's registry

	mu      sync.Mutex
	plugins map[string]*pluginRegisterer
}

func newPluginRegistry(reg prometheus.Registerer) *pluginRegistry {
	return &pluginRegistry{parent: reg, plugins: map[string]*pluginRegisterer{}}
}

func (r *pluginRegistry) forPlugin(name string) prometheus.Registerer {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.plugins[name]
	if !ok {
		p = &pluginRegisterer{parent: r.parent}
		r.plugins[name] = p
	}
	return p
}

// release unregisters every collector the plugin registered.
func (r *pluginRegistry) release(name string) {
	r.mu.Lock()
	p := r.plugins[name]
	delete(r.plugins, name)
	r.mu.Unlock()
	if p != nil {
		p.release()
	}
}

// pluginRegisterer is one plugin's view of the agent's registry.
type pluginRegisterer struct {
	parent prometheus.Registerer

	mu         sync.Mutex
	collectors []prometheus.Collector
}

func (p *pluginRegisterer) Register(c prometheus.Collector) error {
	if err := p.parent.Register(c); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.collectors = append(p.collectors, c)
	return nil
}

func (p *pluginRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := p.Register(c); err != nil {
			panic(err)
		}
	}
}

func (p *pluginRegisterer) Unregister(c prometheus.Collector) bool {
	p.mu.Lock()
	for i, have := range p.collectors {
		if have == c {
			p.collectors = append(p.collectors[:i], p.collectors[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	return p.parent.Unregister(c)
}

func (p *pluginRegisterer) release() {
	p.mu.Lock()
	cs := p.collectors
	p.collectors = nil
	p.mu.Unlock()
	for _, c := range cs {
		p.parent.Unregister(c)
	}
}

var _ prometheus.Registerer = (*pluginRegisterer)(nil)
