package alertmanager

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Alert is one alert as Alertmanager's v2 API takes it.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Name returns the alertname label.
func (a Alert) Name() string { return a.Labels["alertname"] }

// Resolved reports whether the alert ended at or before t.
func (a Alert) Resolved(t time.Time) bool { return !a.EndsAt.IsZero() && !a.EndsAt.After(t) }

// key identifies a label set: the sorted name=value pairs.
func key(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte('\xff')
		b.WriteString(labels[k])
		b.WriteByte('\xff')
	}
	return b.String()
}
