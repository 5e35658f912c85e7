package extmanager

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
)

// ReadyPattern is the route of an AI plugin's readiness: the answer a
// Kubernetes readinessProbe on the model server's pod, an Envoy health
// check or a gateway's endpoint picker takes a server out of rotation by.
// The security plugin leaves it open (security.AIReadyPath) and the rate
// limiter exempts it, as they do /readyz.
const ReadyPattern = "GET /api/v1/ai-plugins/{id}/ready"

// Readiness is the answer of the readiness endpoint.
type Readiness struct {
	ID    string       `json:"id"`
	Ready bool         `json:"ready"`
	State health.State `json:"state"`
	// Reason says why the plugin is not ready, or what its last check
	// found.
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Checked time.Time `json:"checked,omitzero"`
}

// readiness decides whether an AI plugin of the catalog can take requests:
// only while it is heard from and its health state is one that serves
// (health.State.Serving: healthy, degraded or cold). A plugin that no check has
// judged yet is not ready: nothing says it serves.
func readiness(p catalog.AIPlugin, checking bool) Readiness {
	r := Readiness{ID: p.ID, State: health.StateUnknown}
	if h := p.Health; h != nil {
		r.State, r.Reason, r.Since, r.Checked = h.State, h.Reason, h.Since, h.Checked
	}
	switch {
	case p.Presence == catalog.PresenceLost:
		r.Reason = "lost: its heartbeats stopped"
	case p.Health == nil && !checking:
		r.Reason = "not checked: health checks are off (extmanager.health.enabled: false) and the plugin reports no health of its own"
	case p.Health == nil || (r.State == health.StateUnknown && r.Checked.IsZero()):
		r.Reason = "no health check has finished yet"
	default:
		r.Ready = r.State.Serving()
	}
	if !r.Ready && r.Reason == "" {
		r.Reason = string(r.State)
	}
	return r
}

// ready serves ReadyPattern: 200 while the AI plugin is ready, 503 with
// its state and the reason while it is not, 404 for an id the catalog does
// not know. The body is JSON, or with ?verbose one line of text.
func (e *ExtManager) ready(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	id := r.PathValue("id")
	p, ok := e.catalog.Get(id)
	if !ok {
		agent.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown AI plugin %q", id))
		return
	}
	rd := readiness(p, e.engine != nil)
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	if !r.URL.Query().Has("verbose") {
		agent.WriteJSON(w, code, rd)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	line := fmt.Sprintf("%s ready: %s", rd.ID, rd.State)
	if !rd.Ready {
		line = fmt.Sprintf("%s not ready: %s", rd.ID, rd.State)
	}
	if rd.Reason != "" && rd.Reason != string(rd.State) {
		line += ": " + strings.ReplaceAll(rd.Reason, "\n", " ")
	}
	_, _ = fmt.Fprintln(w, line)
}
