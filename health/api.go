package health

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

// Handlers serve the engine on the admin API. known reports whether an id
// is an AI plugin the catalog knows; unknown ids are 404.
type Handlers struct {
	Engine *Engine
	Known  func(id string) bool
	Now    func() time.Time
}

func (h Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// maxLimit bounds the records of one history answer.
const maxLimit = 10000

// History serves GET .../ai-plugins/{id}/history?since=&until=&limit=.
// since and until are RFC 3339 times, Unix seconds, or durations before now
// ("1h"); the defaults are the last hour, and limit (default 1000) bounds
// the checks and the transitions, newest first.
func (h Handlers) History(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !h.Known(id) {
		agent.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown AI plugin %q", id))
		return
	}
	now := h.now()
	q, err := agent.ParseQuery(r, now, "since", "until", "limit")
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	since, err := q.Time("since", now.Add(-time.Hour))
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	until, err := q.Time("until", now.Add(time.Nanosecond))
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	if !until.After(since) {
		agent.WriteQueryError(w, &agent.ParamError{Param: "until", Value: q.Get("until"), Want: "must be after since"})
		return
	}
	limit, err := q.Int("limit", 1000, 1, maxLimit)
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	checks, trans, err := h.Engine.History().Query(r.Context(), id, since, until, limit)
	if err != nil {
		agent.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if checks == nil {
		checks = []CheckRecord{}
	}
	if trans == nil {
		trans = []Transition{}
	}
	agent.WriteJSON(w, http.StatusOK, map[string]any{
		"id": id, "since": since, "until": until, "checks": checks, "transitions": trans,
	})
}

// Uptime serves GET .../ai-plugins/{id}/uptime: uptime ratio, transitions
// and mean latency over 1 h, 24 h and 7 d.
func (h Handlers) Uptime(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !h.Known(id) {
		agent.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown AI plugin %q", id))
		return
	}
	u, err := h.Engine.History().Uptime(r.Context(), id, h.now())
	if err != nil {
		agent.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	body := map[string]any{"id": id, "windows": u}
	if s, ok := h.Engine.Status(id); ok {
		body["state"], body["since"] = s.State, s.Since
	}
	agent.WriteJSON(w, http.StatusOK, body)
}

// Overview serves GET /api/v1/admin/ai-health: the roll-up and every
// plugin's status.
func (h Handlers) Overview(w http.ResponseWriter, _ *http.Request) {
	agent.WriteJSON(w, http.StatusOK, map[string]any{"rollup": h.Engine.Rollup(), "plugins": h.Engine.Statuses()})
}
