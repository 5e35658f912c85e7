package alertmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/alerts"
)

// Evaluator defaults, as Prometheus has them.
const (
	DefaultInterval       = 10 * time.Second
	DefaultResendInterval = time.Minute
	// ResolvedRetention is how long a resolved alert is resent, so that
	// an Alertmanager that missed the first resolved message still hears it.
	ResolvedRetention = 15 * time.Minute
)

// Sender takes alerts to send; *Notifier is one.
type Sender interface{ Send(alerts ...Alert) }

// SenderFunc adapts a function to a Sender.
type SenderFunc func(alerts ...Alert)

// Send calls f.
func (f SenderFunc) Send(alerts ...Alert) { f(alerts...) }

// EvaluatorOptions configures an Evaluator.
type EvaluatorOptions struct {
	// Gatherer is the agent's metrics registry, the one behind /metrics.
	Gatherer prometheus.Gatherer
	Sender   Sender
	// Labels are added to every alert, as Prometheus adds the target's
	// job and instance: give at least job and instance. A rule's labels
	// win over these.
	Labels map[string]string
	// Interval is how often the rules are evaluated.
	Interval time.Duration
	// ResendInterval is how often a firing alert is sent again.
	ResendInterval time.Duration
	// Rules to evaluate; nil means Rules.
	Rules   []Rule
	Metrics *Metrics
	Logger  *slog.Logger
}

// Evaluator evaluates the rules on the agent's metrics and hands the alerts
// that need sending to a Sender. Its methods are for one goroutine.
type Evaluator struct {
	o      EvaluatorOptions
	rules  []*rule
	window *Window
	prev   time.Time
}

// rule is a Rule with its definition from vitals.rules.yml.
type rule struct {
	Rule
	hold        time.Duration // the rule's "for"
	labels      map[string]string
	annotations map[string]*template.Template
	active      map[string]*alertState
}

// alertState is one alert of one rule, as Prometheus' rule manager keeps it.
type alertState struct {
	labels      map[string]string
	annotations map[string]string
	firing      bool
	activeAt    time.Time
	firedAt     time.Time
	resolvedAt  time.Time
	lastSentAt  time.Time
	validUntil  time.Time
}

// NewEvaluator checks the options and finds each rule's labels, "for" and
// annotation templates in the embedded vitals.rules.yml.
func NewEvaluator(o EvaluatorOptions) (*Evaluator, error) {
	if o.Gatherer == nil || o.Sender == nil {
		return nil, errors.New("alertmanager: Gatherer and Sender are required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.ResendInterval <= 0 {
		o.ResendInterval = DefaultResendInterval
	}
	if o.Rules == nil {
		o.Rules = Rules
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics, _ = NewMetrics(nil)
	}
	defs, err := alerts.Rules()
	if err != nil {
		return nil, err
	}
	byName := map[string]alerts.Rule{}
	for _, d := range defs {
		byName[d.Alert] = d
	}
	reads := map[string]bool{}
	for _, r := range o.Rules {
		for _, n := range r.Reads {
			reads[n] = true
		}
	}
	e := &Evaluator{o: o, window: newWindow(longestWindow+2*o.Interval, reads)}
	for _, r := range o.Rules {
		d, ok := byName[r.Alert]
		if !ok {
			return nil, fmt.Errorf("alert %s is not in alerts/vitals.rules.yml", r.Alert)
		}
		rl := &rule{Rule: r, hold: d.For, labels: d.Labels, annotations: map[string]*template.Template{}, active: map[string]*alertState{}}
		for k, text := range d.Annotations {
			t, err := parseTemplate(r.Alert+"."+k, text)
			if err != nil {
				return nil, fmt.Errorf("alert %s: annotation %s: %w", r.Alert, k, err)
			}
			rl.annotations[k] = t
		}
		e.rules = append(e.rules, rl)
	}
	return e, nil
}

// Run evaluates every Interval until ctx ends.
func (e *Evaluator) Run(ctx context.Context) {
	tick := time.NewTicker(e.o.Interval)
	defer tick.Stop()
	e.Eval(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			e.Eval(now)
		}
	}
}

// Eval gathers the metrics, evaluates every rule at now and sends the
// alerts that are new, due for a resend, or resolved.
func (e *Evaluator) Eval(now time.Time) {
	families, err := e.o.Gatherer.Gather()
	if err != nil { // what was gathered is still evaluated
		e.o.Metrics.evalFailed.Inc()
		e.o.Logger.Warn("alert evaluation: not every metric could be read", "err", err)
	}
	e.window.update(now, families, e.prev)
	e.prev = now
	var out []Alert
	pending, firing := 0, 0
	for _, r := range e.rules {
		out = append(out, e.evalRule(r, now)...)
		for _, a := range r.active {
			switch {
			case a.firing && a.resolvedAt.IsZero():
				firing++
			case !a.firing:
				pending++
			}
		}
	}
	e.o.Metrics.alerts.WithLabelValues("pending").Set(float64(pending))
	e.o.Metrics.alerts.WithLabelValues("firing").Set(float64(firing))
	if len(out) > 0 {
		e.o.Sender.Send(out...)
	}
}

func (e *Evaluator) evalRule(r *rule, now time.Time) []Alert {
	seen := map[string]bool{}
	for _, s := range r.Cond(e.window) {
		labels := maps.Clone(e.o.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, s.Labels)
		maps.Copy(labels, r.labels)
		labels["alertname"] = r.Alert
		k := key(labels)
		seen[k] = true
		a := r.active[k]
		if a == nil || !a.resolvedAt.IsZero() {
			a = &alertState{labels: labels, activeAt: now}
			r.active[k] = a
		}
		a.annotations = expand(r, s, labels)
		if !a.firing && now.Sub(a.activeAt) >= r.hold {
			a.firing, a.firedAt = true, now
		}
	}
	var out []Alert
	for k, a := range r.active {
		if !seen[k] {
			switch {
			case !a.firing: // pending only: forget it
				delete(r.active, k)
				continue
			case a.resolvedAt.IsZero():
				a.resolvedAt = now
			case now.Sub(a.resolvedAt) > ResolvedRetention:
				delete(r.active, k)
				continue
			}
		}
		if !a.firing || !e.needsSending(a, now) {
			continue
		}
		a.lastSentAt = now
		a.validUntil = now.Add(4 * max(e.o.ResendInterval, e.o.Interval))
		alert := Alert{Labels: a.labels, Annotations: a.annotations, StartsAt: a.firedAt, EndsAt: a.validUntil}
		if !a.resolvedAt.IsZero() {
			alert.EndsAt = a.resolvedAt
		}
		out = append(out, alert)
	}
	slices.SortFunc(out, func(x, y Alert) int { return strings.Compare(key(x.Labels), key(y.Labels)) })
	return out
}

// needsSending is Prometheus' rule: a new resolution at once, otherwise
// once per resend interval.
func (e *Evaluator) needsSending(a *alertState, now time.Time) bool {
	if a.resolvedAt.After(a.lastSentAt) {
		return true
	}
	return !a.lastSentAt.Add(e.o.ResendInterval).After(now)
}

// Active returns the alerts that fire now, sorted by labels.
func (e *Evaluator) Active() []Alert {
	var out []Alert
	for _, r := range e.rules {
		for _, a := range r.active {
			if a.firing && a.resolvedAt.IsZero() {
				out = append(out, Alert{Labels: a.labels, Annotations: a.annotations, StartsAt: a.firedAt, EndsAt: a.validUntil})
			}
		}
	}
	slices.SortFunc(out, func(x, y Alert) int { return strings.Compare(key(x.Labels), key(y.Labels)) })
	return out
}

// templateData is what a Prometheus annotation template sees.
type templateData struct {
	Labels         map[string]string
	ExternalLabels map[string]string
	Value          float64
}

// templatePrefix defines the variables Prometheus defines for its rules'
// templates.
const templatePrefix = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=zero").Parse(templatePrefix + text)
}

func expand(r *rule, s Sample, labels map[string]string) map[string]string {
	out := make(map[string]string, len(r.annotations))
	data := templateData{Labels: labels, ExternalLabels: map[string]string{}, Value: s.Value}
	for k, t := range r.annotations {
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			out[k] = fmt.Sprintf("<error expanding template: %v>", err)
			continue
		}
		out[k] = b.String()
	}
	return out
}
