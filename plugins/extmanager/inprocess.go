package extmanager

import (
	"context"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
)

// startInProcess lists the running host plugins that implement AI, and
// lists them again whenever a plugin changes state.
func (e *ExtManager) startInProcess(ctx context.Context) {
	changed := make(chan struct{}, 1)
	e.host.SubscribeEvents(func(ev agent.Event) { // ended by the host at stop
		switch ev.To {
		case agent.StateRunning, agent.StateStopping, agent.StateFailed, agent.StateDisabled:
		default:
			return
		}
		select { // coalesce: one pending rescan is enough
		case changed <- struct{}{}:
		default:
		}
	})
	e.scanInProcess(ctx)
	e.host.Go(func(ctx context.Context) {
		defer e.catalog.Reconcile(catalog.SourceInProcess, nil, "extmanager stopped")
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				e.scanInProcess(ctx)
			}
		}
	})
}

// scanInProcess reconciles the catalog's in-process plugins with the
// running host plugins that implement AI. Calls are serialized: Start makes
// the first, the rescan goroutine the others.
func (e *ExtManager) scanInProcess(ctx context.Context) {
	type found struct {
		id string
		ai catalog.AI
	}
	var specs []catalog.Spec
	var ais []found
	for _, p := range e.plugins.RunningPlugins() {
		ai, ok := p.(catalog.AI)
		if !ok || p == agent.Plugin(e) {
			continue
		}
		md := p.Metadata()
		// The version is the AI server's, which Capabilities reports; the
		// host plugin's own version is a label.
		s := catalog.Spec{ID: md.Name, Source: catalog.SourceInProcess, Labels: map[string]string{"host_plugin_version": md.Version}}
		if ep, ok := p.(catalog.Endpointer); ok {
			s.Endpoint = ep.Endpoint()
		}
		specs = append(specs, s)
		ais = append(ais, found{md.Name, ai})
	}
	for _, err := range e.catalog.Reconcile(catalog.SourceInProcess, specs, "host plugin no longer running") {
		e.discoveryError(catalog.SourceInProcess, err)
	}
	// Ask only instances not asked yet: a rescan follows every lifecycle
	// event of any plugin, and asking is a detection.
	running := map[string]catalog.AI{}
	for _, f := range ais {
		running[f.id] = f.ai
	}
	for id, ai := range e.inproc {
		if running[id] != ai {
			delete(e.inproc, id)
		}
	}
	for _, f := range ais {
		if e.inproc[f.id] == f.ai {
			continue
		}
		e.inproc[f.id] = f.ai
		cctx, cancel := context.WithTimeout(ctx, e.config().Detection.Timeout.D())
		det, err := f.ai.Capabilities(cctx)
		h := f.ai.HealthCheck(cctx)
		cancel()
		if h.Checked.IsZero() {
			h.Checked = time.Now()
		}
		e.catalog.SetDetection(f.id, det, err)
		e.catalog.SetHealth(f.id, health.Reported(f.id, h))
	}
}
