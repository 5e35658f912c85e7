package logconsumer

import (
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

// MaxLimit bounds one read.
const MaxLimit = 1000

type httpHandler struct{ p *Plugin }

// ServeHTTP serves GET /api/v1/admin/logs?source=&level=&since=&until=&limit=.
func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), h.p.now())
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	entries, err := h.p.Query(r.Context(), q)
	if err != nil {
		agent.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]any{"logs": entries, "count": len(entries)})
}

// ParseQuery reads the query parameters: source, level (minimum: debug,
// info, warn, error), since and until (RFC 3339 time, or a duration such as
// 15m meaning that long ago), limit (1..1000, default 100).
func ParseQuery(v map[string][]string, now time.Time) (Query, error) {
	aq, err := agent.NewQuery(v, now, "source", "level", "since", "until", "limit")
	if err != nil {
		return Query{}, err
	}
	q := Query{Source: aq.Get("source"), Limit: 100}
	if q.Source != "" && !sourceRE().MatchString(q.Source) {
		return q, &agent.ParamError{Param: "source", Value: q.Source, Want: "want 1..128 of letters, digits, _ . : -"}
	}
	if l := aq.Get("level"); l != "" {
		if _, ok := levelRank[strings.ToLower(l)]; !ok && normLevel(l) == "info" && !strings.EqualFold(l, "info") {
			return q, &agent.ParamError{Param: "level", Value: l, Want: "want debug, info, warn or error"}
		}
		q.Level = normLevel(l)
	}
	if q.Since, err = aq.Time("since", time.Time{}); err != nil {
		return q, err
	}
	if q.Until, err = aq.Time("until", time.Time{}); err != nil {
		return q, err
	}
	if q.Limit, err = aq.Int("limit", 100, 1, MaxLimit); err != nil {
		return q, err
	}
	return q, nil
}
