package kubernetes

import (
	"bytes"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// PrometheusRuleFile is where PrometheusRule's output is committed,
// relative to this package.
const PrometheusRuleFile = "base/prometheusrule.yaml"

// generatedHeader starts the generated file; Go's convention for generated
// code, so that tools and reviewers leave it alone.
const generatedHeader = "# Code generated from alerts/vitals.rules.yml by go test ./deploy/kubernetes -run TestPrometheusRule -update; DO NOT EDIT.\n"

// PrometheusRule returns the Prometheus Operator PrometheusRule that holds
// the rule groups of a Prometheus rules file (alerts/vitals.rules.yml), as
// YAML. The groups are decoded strictly into the operator's own types, so a
// rules file key that a PrometheusRule cannot hold is an error here rather
// than a rule the operator silently drops.
func PrometheusRule(rulesFile []byte) ([]byte, error) {
	var f struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(rulesFile, &f); err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	if len(f.Groups) == 0 {
		return nil, fmt.Errorf("rules file: no groups")
	}
	pr := monitoringv1.PrometheusRule{
		TypeMeta: metav1.TypeMeta{APIVersion: monitoringv1.SchemeGroupVersion.String(), Kind: monitoringv1.PrometheusRuleKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:   "vitals",
			Labels: map[string]string{"app.kubernetes.io/name": "vitals"},
		},
		Spec: monitoringv1.PrometheusRuleSpec{Groups: f.Groups},
	}
	b, err := yaml.Marshal(pr)
	if err != nil {
		return nil, err
	}
	// The API server fills in creationTimestamp; a manifest has none.
	b = bytes.Replace(b, []byte("  creationTimestamp: null\n"), nil, 1)
	return append([]byte(generatedHeader), b...), nil
}
