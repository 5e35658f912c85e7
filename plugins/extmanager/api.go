package extmanager

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/extmanager/health"
	"github.com/vitals-dev/vitals/probes"
)

// Routes serves the AI plugin catalog on the admin API.
func (e *ExtManager) Routes() []agent.Route {
	routes := []agent.Route{
		{Pattern: "GET /api/v1/admin/ai-plugins", Handler: http.HandlerFunc(e.list)},
		{Pattern: "GET /api/v1/admin/ai-plugins/{id}", Handler: http.HandlerFunc(e.get)},
	}
	if e.engine != nil {
		h := health.Handlers{Engine: e.engine, Known: func(id string) bool {
			_, ok := e.catalog.Get(id)
			return ok
		}}
		routes = append(routes,
			agent.Route{Pattern: "GET /api/v1/admin/ai-plugins/{id}/history", Handler: http.HandlerFunc(h.History)},
			agent.Route{Pattern: "GET /api/v1/admin/ai-plugins/{id}/uptime", Handler: http.HandlerFunc(h.Uptime)},
			agent.Route{Pattern: "GET /api/v1/admin/ai-health", Handler: http.HandlerFunc(h.Overview)},
		)
	}
	return routes
}

func (e *ExtManager) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := Filter{
		Capability: probes.Capability(q.Get("capability")),
		Kind:       probes.Kind(q.Get("kind")),
		Source:     Source(q.Get("source")),
		Health:     q.Get("health"),
	}
	if f.Capability != "" && !slices.Contains(probes.Capabilities(), f.Capability) {
		agent.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown capability %q; want one of %v", f.Capability, probes.Capabilities()))
		return
	}
	if f.Kind != "" && !slices.Contains(append(probes.Kinds(), probes.KindAuto, probes.KindUnknown), f.Kind) {
		agent.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown kind %q; want one of %v", f.Kind, probes.Kinds()))
		return
	}
	if f.Source != "" && !slices.Contains(Sources, f.Source) {
		agent.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown source %q; want one of %v", f.Source, Sources))
		return
	}
	if h := f.Health; h != "" && !slices.Contains([]string{"ok", "degraded", "failing", "unknown"}, h) {
		agent.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown health %q; want ok, degraded, failing or unknown", h))
		return
	}
	list := e.catalog.List(f)
	agent.WriteJSON(w, http.StatusOK, map[string]any{"ai_plugins": list, "count": len(list)})
}

func (e *ExtManager) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, ok := e.catalog.Get(id)
	if !ok {
		agent.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown AI plugin %q", id))
		return
	}
	agent.WriteJSON(w, http.StatusOK, p)
}
