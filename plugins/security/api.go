package security

import (
	"net/http"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/audit"
)

// serveAudit serves GET /api/v1/admin/audit?actor=&action=&outcome=&since=&until=&limit=.
func (p *Plugin) serveAudit(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		agent.WriteQueryError(w, err)
		return
	}
	lg := p.Audit()
	if lg == nil {
		agent.WriteError(w, http.StatusServiceUnavailable, "the audit log is not open")
		return
	}
	recs, err := lg.Query(r.Context(), f)
	if err != nil {
		agent.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]any{"records": recs, "count": len(recs)})
}

func parseFilter(v map[string][]string, now time.Time) (audit.Filter, error) {
	q, err := agent.NewQuery(v, now, "actor", "action", "outcome", "since", "until", "limit")
	if err != nil {
		return audit.Filter{}, err
	}
	f := audit.Filter{Actor: q.Get("actor"), Action: q.Get("action")}
	if f.Outcome, err = q.OneOf("outcome", audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeDenied); err != nil {
		return f, err
	}
	if f.Since, err = q.Time("since", time.Time{}); err != nil {
		return f, err
	}
	if f.Until, err = q.Time("until", time.Time{}); err != nil {
		return f, err
	}
	if f.Limit, err = q.Int("limit", 100, 1, 1000); err != nil {
		return f, err
	}
	return f, nil
}
