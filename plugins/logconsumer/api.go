package logconsumer

import (
	"fmt"
	"net/http"
	"strconv"
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
		agent.WriteError(w, http.StatusBadRequest, err.Error())
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
	get := func(k string) string {
		if s := v[k]; len(s) > 0 {
			return s[0]
		}
		return ""
	}
	for k := range v {
		switch k {
		case "source", "level", "since", "until", "limit":
		default:
			return Query{}, fmt.Errorf("unknown parameter %q; want source, level, since, until or limit", k)
		}
	}
	q := Query{Source: get("source"), Limit: 100}
	if q.Source != "" && !sourceRE.MatchString(q.Source) {
		return q, fmt.Errorf("source %q: want 1..128 of letters, digits, _ . : -", q.Source)
	}
	if l := get("level"); l != "" {
		if _, ok := levelRank[strings.ToLower(l)]; !ok && normLevel(l) == "info" && !strings.EqualFold(l, "info") {
			return q, fmt.Errorf("level %q: want debug, info, warn or error", l)
		}
		q.Level = normLevel(l)
	}
	var err error
	if q.Since, err = parseTime("since", get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = parseTime("until", get("until"), now); err != nil {
		return q, err
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("limit %q: want a number from 1 to %d", s, MaxLimit)
		}
		q.Limit = n
	}
	return q, nil
}

func parseTime(key, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (15m)", key, s)
}
