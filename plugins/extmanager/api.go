package extmanager

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// Routes serves the AI plugin catalog on the admin API, and each AI
// plugin's readiness.
func (e *ExtManager) Routes() []agent.Route {
	routes := []agent.Route{
		{Pattern: "GET /api/v1/admin/ai-plugins", Handler: http.HandlerFunc(e.list)},
		{Pattern: "GET /api/v1/admin/ai-plugins/{id}", Handler: http.HandlerFunc(e.get)},
		{Pattern: ReadyPattern, Handler: http.HandlerFunc(e.ready)},
		{Pattern: "GET /probe", Handler: e.probe},
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
	q, err := agent.ParseQuery(r, time.Now(), "capability", "kind", "source", "health")
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	var capability, kind, source, health string
	for _, p := range []struct {
		key     string
		dst     *string
		allowed []string
	}{
		{"capability", &capability, names(probes.Capabilities())},
		{"kind", &kind, names(append(probes.Kinds(), probes.KindAuto, probes.KindUnknown))},
		{"source", &source, names(catalog.Sources)},
		{"health", &health, []string{"ok", "degraded", "failing", "unknown"}},
	} {
		if *p.dst, err = q.OneOf(p.key, p.allowed...); err != nil {
			agent.WriteQueryError(w, err)
			return
		}
	}
	f := catalog.Filter{Capability: probes.Capability(capability), Kind: probes.Kind(kind), Source: catalog.Source(source), Health: health}
	list := e.catalog.List(f)
	agent.WriteJSON(w, http.StatusOK, map[string]any{"ai_plugins": list, "count": len(list)})
}

// names returns the values of a string-typed list as strings.
func names[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
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
