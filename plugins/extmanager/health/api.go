package health

import (
	"fmt"
	"net/http"
	"strconv"
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
	q := r.URL.Query()
	since, err := parseTime(q.Get("since"), now, now.Add(-time.Hour))
	if err != nil {
		agent.WriteError(w, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	until, err := parseTime(q.Get("until"), now, now.Add(time.Nanosecond))
	if err != nil {
		agent.WriteError(w, http.StatusBadRequest, "until: "+err.Error())
		return
	}
	if !until.After(since) {
		agent.WriteError(w, http.StatusBadRequest, "until must be after since")
		return
	}
	limit := 1000
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxLimit {
			agent.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1 to %d", maxLimit))
			return
		}
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

func parseTime(s string, now, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(f*1e9)), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, Unix seconds or a duration before now", s)
}
