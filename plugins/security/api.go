package security

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/audit"
)

// serveAudit serves GET /api/v1/admin/audit?actor=&action=&outcome=&since=&until=&limit=.
func (p *Plugin) serveAudit(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		agent.WriteError(w, http.StatusBadRequest, err.Error())
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
	get := func(k string) string {
		if s := v[k]; len(s) > 0 {
			return s[0]
		}
		return ""
	}
	for k := range v {
		switch k {
		case "actor", "action", "outcome", "since", "until", "limit":
		default:
			return audit.Filter{}, fmt.Errorf("unknown parameter %q; want actor, action, outcome, since, until or limit", k)
		}
	}
	f := audit.Filter{Actor: get("actor"), Action: get("action"), Outcome: get("outcome"), Limit: 100}
	switch f.Outcome {
	case "", audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeDenied:
	default:
		return f, fmt.Errorf("outcome %q: want success, failure or denied", f.Outcome)
	}
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		s := get(t.key)
		if s == "" {
			continue
		}
		if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
			*t.dst = tm
		} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			*t.dst = now.Add(-d)
		} else {
			return f, fmt.Errorf("%s %q: want an RFC 3339 time or a duration such as 1h", t.key, s)
		}
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return f, fmt.Errorf("limit %q: want a number from 1 to 1000", s)
		}
		f.Limit = n
	}
	return f, nil
}
