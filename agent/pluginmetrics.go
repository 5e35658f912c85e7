package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// pluginRegisterer is one plugin's view of the agent's registry
// (Host.Metrics). It remembers what the plugin registered, so that the
// host unregisters a plugin's collectors when it stops or fails to
// initialize: a plugin started again after a reload or an enable registers
// afresh, without cleaning up itself.
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
