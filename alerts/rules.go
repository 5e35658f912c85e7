package alerts

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/common/model"
)

//go:embed vitals.rules.yml
var rulesYAML []byte

// Rule is one alerting rule of vitals.rules.yml.
type Rule struct {
	Group string
	Alert string
	Expr  string
	For   time.Duration
	// Labels are the rule's own labels (severity, scope).
	Labels map[string]string
	// Annotations are Prometheus templates ({{ $labels.plugin }}, {{ $value }}).
	Annotations map[string]string
}

// Rules parses the alerting rules of vitals.rules.yml, in file order.
func Rules() ([]Rule, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rulesYAML, &f); err != nil {
		return nil, fmt.Errorf("vitals.rules.yml: %w", err)
	}
	var out []Rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			rule := Rule{Group: g.Name, Alert: r.Alert, Expr: r.Expr, Labels: r.Labels, Annotations: r.Annotations}
			if r.For != "" {
				d, err := model.ParseDuration(r.For)
				if err != nil {
					return nil, fmt.Errorf("vitals.rules.yml: %s: for: %w", r.Alert, err)
				}
				rule.For = time.Duration(d)
			}
			out = append(out, rule)
		}
	}
	return out, nil
}
