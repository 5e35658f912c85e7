package discovery

import (
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
)

// benchRunner is a source of 10 000 discovered targets, the most one
// source may hold, one per group as the kubernetes pod role makes them.
func benchRunner() *runner {
	r := &runner{name: "s", groups: map[string]*targetgroup.Group{}, changed: map[string]bool{}}
	for i := range DefaultMaxTargets {
		src := fmt.Sprintf("pod/models/vllm-%d", i)
		r.groups[src] = &targetgroup.Group{
			Source: src,
			Labels: model.LabelSet{
				"__meta_team": "search", "__meta_kubernetes_namespace": "models",
				"__meta_kubernetes_pod_name": model.LabelValue(fmt.Sprintf("vllm-%d", i)),
			},
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:8000", i>>16, (i>>8)&255, i&255))}},
		}
	}
	return r
}

func benchRules() []*relabel.Config {
	return []*relabel.Config{
		{SourceLabels: model.LabelNames{"__meta_team"}, Regex: relabel.MustNewRegexp("(.*)"), TargetLabel: "team", Replacement: "$1", Action: relabel.Replace, NameValidationScheme: model.UTF8Validation},
		{SourceLabels: model.LabelNames{"__meta_kubernetes_pod_name"}, Regex: relabel.MustNewRegexp("(.+)"), TargetLabel: LabelID, Replacement: "$1", Action: relabel.Replace, NameValidationScheme: model.UTF8Validation},
		{SourceLabels: model.LabelNames{"__meta_kubernetes_namespace"}, Regex: relabel.MustNewRegexp("kube-system"), Action: relabel.Drop, NameValidationScheme: model.UTF8Validation},
	}
}

// BenchmarkRebuildAll relabels and builds all 10 000, as the update after
// a change of the rules does.
func BenchmarkRebuildAll(b *testing.B) {
	r, rules := benchRunner(), benchRules()
	b.ReportAllocs()
	for b.Loop() {
		r.allDirty = true
		if out, _, _ := r.rebuild(rules, nil); len(out) != DefaultMaxTargets {
			b.Fatalf("%d targets", len(out))
		}
	}
}

// BenchmarkRebuildOne is the update after one pod of the 10 000 changed.
func BenchmarkRebuildOne(b *testing.B) {
	r, rules := benchRunner(), benchRules()
	r.rebuild(rules, nil)
	b.ReportAllocs()
	for b.Loop() {
		r.changed["pod/models/vllm-7"] = true
		if out, _, _ := r.rebuild(rules, nil); len(out) != DefaultMaxTargets {
			b.Fatalf("%d targets", len(out))
		}
	}
}
