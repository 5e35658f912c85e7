package kubernetes

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "write "+PrometheusRuleFile+" from alerts/vitals.rules.yml")

const rulesFile = "../../alerts/vitals.rules.yml"

// kustomizations lists the directories with a kustomization.yaml: the base
// and the workloads built on it.
func kustomizations(t *testing.T) (all []string) {
	t.Helper()
	files, err := filepath.Glob("*/kustomization.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no kustomizations: %v", err)
	}
	for _, f := range files {
		all = append(all, filepath.Dir(f))
	}
	if !slices.Contains(all, "base") {
		t.Fatal("no base/kustomization.yaml")
	}
	return all
}

// TestPrometheusRule checks that the committed PrometheusRule is what
// PrometheusRule makes of alerts/vitals.rules.yml (-update writes it), and,
// apart from that code, that it holds the same groups and rules as
// Prometheus' own rule file parser reads from the rules file.
func TestPrometheusRule(t *testing.T) {
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := PrometheusRule(src)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(PrometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(PrometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what alerts/vitals.rules.yml makes: go test ./deploy/kubernetes -run TestPrometheusRule -update", PrometheusRuleFile)
	}

	rf, errs := rulefmt.Parse(src, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules file: %v", errors.Join(errs...))
	}
	objs := decodeFile(t, PrometheusRuleFile)
	if len(objs) != 1 {
		t.Fatalf("%s has %d objects, want one PrometheusRule", PrometheusRuleFile, len(objs))
	}
	pr, ok := objs[0].(*monitoringv1.PrometheusRule)
	if !ok {
		t.Fatalf("%s holds a %T", PrometheusRuleFile, objs[0])
	}
	if len(pr.Spec.Groups) != len(rf.Groups) {
		t.Fatalf("%d groups, the rules file has %d", len(pr.Spec.Groups), len(rf.Groups))
	}
	n := 0
	for i, g := range rf.Groups {
		pg := pr.Spec.Groups[i]
		if pg.Name != g.Name || len(pg.Rules) != len(g.Rules) {
			t.Errorf("group %d: %q with %d rules, the rules file has %q with %d", i, pg.Name, len(pg.Rules), g.Name, len(g.Rules))
			continue
		}
		if interval := string(ptrOr(pg.Interval, "")); interval != durationString(g.Interval) {
			t.Errorf("group %s: interval %q, the rules file has %q", g.Name, interval, durationString(g.Interval))
		}
		for j, r := range g.Rules {
			n++
			p := pg.Rules[j]
			name := g.Name + "/" + r.Alert + r.Record
			switch {
			case p.Alert != r.Alert || p.Record != r.Record:
				t.Errorf("%s: alert %q record %q, the rules file has %q %q", name, p.Alert, p.Record, r.Alert, r.Record)
			case p.Expr.String() != r.Expr:
				t.Errorf("%s: expr %q, the rules file has %q", name, p.Expr.String(), r.Expr)
			case string(ptrOr(p.For, "")) != durationString(r.For):
				t.Errorf("%s: for %q, the rules file has %q", name, ptrOr(p.For, ""), durationString(r.For))
			case !equalMaps(p.Labels, r.Labels) || !equalMaps(p.Annotations, r.Annotations):
				t.Errorf("%s: labels %v annotations %v, the rules file has %v %v", name, p.Labels, p.Annotations, r.Labels, r.Annotations)
			}
		}
	}
	if n == 0 {
		t.Error("no rules compared")
	}
}

// TestPrometheusRuleRefusesUnknownKeys: a rules file key that a
// PrometheusRule cannot hold fails the generator instead of vanishing.
func TestPrometheusRuleRefusesUnknownKeys(t *testing.T) {
	for name, src := range map[string]string{
		"rule key":  "groups: [{name: g, rules: [{alert: A, expr: up, bogus: 1}]}]",
		"group key": "groups: [{name: g, bogus: 1, rules: [{alert: A, expr: up}]}]",
		"top key":   "groups: [{name: g, rules: [{alert: A, expr: up}]}]\nbogus: 1",
		"no groups": "groups: []",
	} {
		if _, err := PrometheusRule([]byte(src)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestKustomizationsListEveryFile: each kustomization.yaml decodes strictly
// and names every other file of its directory, as a resource or a
// ConfigMap's file, and only files that exist; so no manifest is left out
// of what `kubectl apply -k` applies.
func TestKustomizationsListEveryFile(t *testing.T) {
	all := kustomizations(t)
	for _, dir := range all {
		k := readKustomization(t, dir)
		listed := map[string]bool{"kustomization.yaml": true}
		for _, r := range k.Resources {
			if strings.HasPrefix(r, "../") {
				if _, err := os.Stat(filepath.Join(dir, r, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource %s is not a kustomization: %v", dir, r, err)
				}
				continue
			}
			listed[r] = true
		}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				listed[f] = true
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for _, e := range entries {
			present[e.Name()] = true
			if !listed[e.Name()] {
				t.Errorf("%s/%s is not in %s/kustomization.yaml", dir, e.Name(), dir)
			}
		}
		for f := range listed {
			if !present[f] {
				t.Errorf("%s/kustomization.yaml lists %s, which does not exist", dir, f)
			}
		}
	}
}

// TestManifestsDecodeStrictly: every document of every manifest decodes
// into its Kubernetes or Prometheus Operator API type with unknown and
// duplicate fields refused.
func TestManifestsDecodeStrictly(t *testing.T) {
	all := kustomizations(t)
	for _, dir := range all {
		for _, r := range readKustomization(t, dir).Resources {
			if !strings.HasPrefix(r, "../") {
				decodeFile(t, filepath.Join(dir, r))
			}
		}
	}
	// The decoder is strict: a misspelt field is an error.
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {prots: []}\n",
		"duplicate field": "apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n",
		"unknown kind":    "apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n",
		"operator field":  "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoints: [{prot: http}]}\n",
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestWorkloads renders the base and each workload with Kustomize and
// checks what a cluster would run: every object strict, in the vitals
// namespace; pods
// that meet the restricted Pod Security Standard with requests, limits and
// probes on /livez and /readyz; a Service and ServiceMonitor that find
// them; the RBAC that discovery needs bound to their ServiceAccount; and
// the generated ConfigMap's core.yaml accepted by the agent's own config
// loader, with the environment the pod gives it.
func TestWorkloads(t *testing.T) {
	all := kustomizations(t)
	for _, dir := range all {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			checkRendered(t, dir, objs)
		})
	}
}

// TestKubectlRendersTheSame: kubectl's own Kustomize renders each workload
// into the same objects, so what the tests check is what `kubectl apply -k`
// applies.
func TestKubectlRendersTheSame(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; TestWorkloads renders with Kustomize's library")
	}
	all := kustomizations(t)
	for _, dir := range all {
		out, err := exec.CommandContext(t.Context(), kubectl, "kustomize", dir).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, ee.Stderr)
			}
			t.Fatal(err)
		}
		// The two may order the objects differently.
		got, want := byName(t, decodeAll(t, "kubectl kustomize "+dir, out)), byName(t, render(t, dir))
		if len(got) != len(want) {
			t.Fatalf("%s: kubectl renders %d objects, Kustomize's library %d", dir, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%s: object %d differs between kubectl and Kustomize's library:\n%v\n%v", dir, i, got[i], want[i])
			}
		}
	}
}

// byName sorts objects by kind and name.
func byName(t *testing.T, objs []runtime.Object) []runtime.Object {
	t.Helper()
	key := func(o runtime.Object) string { return fmt.Sprintf("%T/%s", o, nameOf(t, o)) }
	slices.SortFunc(objs, func(a, b runtime.Object) int { return strings.Compare(key(a), key(b)) })
	return objs
}

// strictDecoder refuses unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

func decode(doc []byte) (runtime.Object, error) {
	obj, _, err := strictDecoder.Decode(doc, nil, nil)
	return obj, err
}

func decodeFile(t *testing.T, file string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, file, b)
}

// decodeAll decodes each document of a multi-document YAML stream.
func decodeAll(t *testing.T, name string, b []byte) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for i, doc := range splitDocs(b) {
		obj, err := decode(doc)
		if err != nil {
			t.Errorf("%s: document %d: %v", name, i+1, err)
			continue
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		t.Errorf("%s: no objects", name)
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func readKustomization(t *testing.T, dir string) kustypes.Kustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustypes.Kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.Kind != kustypes.KustomizationKind || k.APIVersion != kustypes.KustomizationVersion {
		t.Errorf("%s/kustomization.yaml is %s %s", dir, k.APIVersion, k.Kind)
	}
	return k
}

// render builds a workload with Kustomize's own library, as `kubectl
// apply -k` does, and decodes what it makes strictly.
func render(t *testing.T, dir string) []runtime.Object {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "kustomize "+dir, b)
}

func namespaceOf(t *testing.T, o runtime.Object) string {
	t.Helper()
	m, ok := o.(interface{ GetNamespace() string })
	if !ok {
		t.Fatalf("%T has no namespace", o)
	}
	return m.GetNamespace()
}

func nameOf(t *testing.T, o runtime.Object) string {
	t.Helper()
	m, ok := o.(interface{ GetName() string })
	if !ok {
		t.Fatalf("%T has no name", o)
	}
	return m.GetName()
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func durationString(d model.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func equalMaps(a, b map[string]string) bool {
	return len(a) == len(b) && reflect.DeepEqual(orEmpty(a), orEmpty(b))
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// TestReadmeProbe: the Prometheus Operator Probe that the README shows
// decodes strictly into the operator's type and points at /probe.
func TestReadmeProbe(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(apiVersion: monitoring.coreos.com/v1\nkind: Probe\n.*?)```").FindSubmatch(b)
	if block == nil {
		t.Fatal("README shows no Probe")
	}
	obj, err := decode(block[1])
	if err != nil {
		t.Fatalf("README's Probe: %v", err)
	}
	p, ok := obj.(*monitoringv1.Probe)
	if !ok {
		t.Fatalf("README's Probe decodes as %T", obj)
	}
	if p.Spec.ProberSpec.Path != "/probe" || p.Spec.Module != "default" || p.Spec.Targets.StaticConfig == nil || len(p.Spec.Targets.StaticConfig.Targets) == 0 {
		t.Errorf("README's Probe: %+v", p.Spec)
	}
}
