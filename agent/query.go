package agent

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Bounds of admin API query parameters.
const (
	// MaxQueryValueBytes bounds one parameter's value.
	MaxQueryValueBytes = 256
	// MaxLookback bounds a duration parameter ("since=24h").
	MaxLookback = 100 * 365 * 24 * time.Hour
)

// The times a query may name: the Unix epoch to the end of year 9999.
var (
	minQueryTime = time.Unix(0, 0).UTC()
	maxQueryTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// ParamError is a query parameter that is unknown, repeated or has a bad
// value; the admin API answers it with 400 naming the parameter.
type ParamError struct {
	Param string
	Value string
	Want  string
	// Unknown is set for a parameter the endpoint does not take.
	Unknown bool
}

func (e *ParamError) Error() string {
	switch {
	case e.Unknown:
		return fmt.Sprintf("unknown parameter %q; %s", e.Param, e.Want)
	case e.Value == "":
		return fmt.Sprintf("%s: %s", e.Param, e.Want)
	}
	return fmt.Sprintf("%s %q: %s", e.Param, e.Value, e.Want)
}

// Query is an admin API request's query, checked: only known parameters,
// each at most once and at most MaxQueryValueBytes long.
type Query struct {
	v   url.Values
	now time.Time
}

// ParseQuery checks r's query against the parameters an endpoint knows.
// now is the time durations count back from.
func ParseQuery(r *http.Request, now time.Time, known ...string) (Query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Query{}, &ParamError{Param: "query", Want: "not a valid URL query: " + err.Error()}
	}
	return NewQuery(v, now, known...)
}

// NewQuery checks parsed query values as ParseQuery does.
func NewQuery(v url.Values, now time.Time, known ...string) (Query, error) {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			want := "this endpoint takes none"
			if len(known) > 0 {
				want = "want " + strings.Join(known, ", ")
			}
			return Query{}, &ParamError{Param: k, Unknown: true, Want: want}
		}
		if len(v[k]) > 1 {
			return Query{}, &ParamError{Param: k, Want: "given more than once"}
		}
		if len(v[k][0]) > MaxQueryValueBytes {
			return Query{}, &ParamError{Param: k, Want: fmt.Sprintf("longer than %d bytes", MaxQueryValueBytes)}
		}
	}
	return Query{v: v, now: now}, nil
}

// Get returns a parameter's value, "" when absent.
func (q Query) Get(key string) string { return q.v.Get(key) }

// Time reads key as an RFC 3339 time, Unix seconds or a duration before
// now ("15m"), between 1970 and 9999; def when absent.
func (q Query) Time(key string, def time.Time) (time.Time, error) {
	s := q.v.Get(key)
	if s == "" {
		return def, nil
	}
	bad := func(want string) (time.Time, error) {
		return time.Time{}, &ParamError{Param: key, Value: s, Want: want}
	}
	const want = "want an RFC 3339 time (2026-01-02T15:04:05Z), Unix seconds or a duration before now (15m)"
	var t time.Time
	if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
		t = tm
	} else if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < float64(minQueryTime.Unix()) || f > float64(maxQueryTime.Unix()) {
			return bad(fmt.Sprintf("Unix seconds must be from 0 to %d", maxQueryTime.Unix()))
		}
		sec, frac := math.Modf(f)
		t = time.Unix(int64(sec), int64(frac*1e9))
	} else if d, err := time.ParseDuration(s); err == nil {
		if d < 0 || d > MaxLookback {
			return bad(fmt.Sprintf("a duration must be from 0 to %s", MaxLookback))
		}
		t = q.now.Add(-d)
	} else {
		return bad(want)
	}
	if t.Before(minQueryTime) || t.After(maxQueryTime) {
		return bad("the time must be between 1970 and 9999")
	}
	return t, nil
}

// Int reads key as a whole number from min to max; def when absent.
func (q Query) Int(key string, def, min, max int) (int, error) {
	s := q.v.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, &ParamError{Param: key, Value: s, Want: fmt.Sprintf("want a whole number from %d to %d", min, max)}
	}
	return n, nil
}

// OneOf reads key as one of the allowed values; "" when absent.
func (q Query) OneOf(key string, allowed ...string) (string, error) {
	s := q.v.Get(key)
	if s == "" || slices.Contains(allowed, s) {
		return s, nil
	}
	return "", &ParamError{Param: key, Value: s, Want: "want one of " + strings.Join(allowed, ", ")}
}

// WriteQueryError answers a bad query: 400 with the parameter named, as
// {"error": ..., "status": 400, "parameter": "since"}.
func WriteQueryError(w http.ResponseWriter, err error) {
	var pe *ParamError
	if errors.As(err, &pe) {
		WriteJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "status": http.StatusBadRequest, "parameter": pe.Param})
		return
	}
	WriteError(w, http.StatusBadRequest, err.Error())
}
