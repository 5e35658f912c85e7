package kubernetes

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/sethvargo/go-envconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/security"
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

func checkRendered(t *testing.T, dir string, objs []runtime.Object) {
	var (
		sas      = map[string]*corev1.ServiceAccount{}
		cms      = map[string]*corev1.ConfigMap{}
		services []*corev1.Service
		monitors []*monitoringv1.ServiceMonitor
		rules    []*monitoringv1.PrometheusRule
		roles    = map[string]*rbacv1.ClusterRole{}
		bindings []*rbacv1.ClusterRoleBinding
		pods     []podOf
	)
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Namespace:
			if o.Name != "vitals" {
				t.Errorf("namespace %s, want vitals", o.Name)
			}
			if o.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", o.Name)
			}
			continue
		case *rbacv1.ClusterRole:
			roles[o.Name] = o
			continue
		case *rbacv1.ClusterRoleBinding:
			bindings = append(bindings, o)
			continue
		case *corev1.ServiceAccount:
			sas[o.Name] = o
		case *corev1.ConfigMap:
			cms[o.Name] = o
		case *corev1.Service:
			services = append(services, o)
		case *monitoringv1.ServiceMonitor:
			monitors = append(monitors, o)
		case *monitoringv1.PrometheusRule:
			rules = append(rules, o)
		case *appsv1.DaemonSet:
			pods = append(pods, podOf{"DaemonSet/" + o.Name, o.Spec.Selector, o.Spec.Template, 1})
		case *appsv1.StatefulSet:
			pods = append(pods, podOf{"StatefulSet/" + o.Name, o.Spec.Selector, o.Spec.Template, int(ptrOr(o.Spec.Replicas, 1))})
			if !slices.ContainsFunc(services, func(s *corev1.Service) bool {
				return s.Name == o.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone
			}) {
				t.Errorf("StatefulSet %s: serviceName %q is not a headless Service of the base", o.Name, o.Spec.ServiceName)
			}
		default:
			t.Errorf("%s renders an unexpected %T", dir, o)
			continue
		}
		if ns := namespaceOf(t, o); ns != "vitals" {
			t.Errorf("%T %s is in namespace %q, want vitals", o, nameOf(t, o), ns)
		}
	}
	wantPods := 1
	if dir == "base" {
		wantPods = 0
	}
	if len(pods) != wantPods || len(services) != 1 || len(monitors) != 1 || len(rules) != 1 || len(sas) != 1 {
		t.Fatalf("%s renders %d workloads, %d services, %d service monitors, %d rules, %d service accounts; want %d, 1, 1, 1, 1",
			dir, len(pods), len(services), len(monitors), len(rules), len(sas), wantPods)
	}
	svc, mon := services[0], monitors[0]
	ms, err := metav1.LabelSelectorAsSelector(&mon.Spec.Selector)
	if err != nil || !ms.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor %s does not select Service %s (%v)", mon.Name, svc.Name, err)
	}
	for _, e := range mon.Spec.Endpoints {
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
			t.Errorf("ServiceMonitor %s scrapes port %q, which Service %s lacks", mon.Name, e.Port, svc.Name)
		}
		if e.Path != "/metrics" {
			t.Errorf("ServiceMonitor %s scrapes %q, want /metrics", mon.Name, e.Path)
		}
	}
	if len(mon.Spec.Endpoints) == 0 {
		t.Errorf("ServiceMonitor %s has no endpoints", mon.Name)
	}
	for name := range sas {
		checkRBAC(t, name, roles, bindings)
	}
	if len(pods) == 0 {
		return
	}

	// The workload's selector is its pods', the Service's selects them, and
	// the ports it names exist.
	w := pods[0]
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || !sel.Matches(labels.Set(w.tmpl.Labels)) {
		t.Errorf("%s: selector %v does not select its pod labels %v (%v)", w.name, w.selector, w.tmpl.Labels, err)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.tmpl.Labels)) {
		t.Errorf("Service %s selects %v, not the pods of %s", svc.Name, svc.Spec.Selector, w.name)
	}
	spec := w.tmpl.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want the agent alone", w.name, len(spec.Containers))
	}
	c := spec.Containers[0]
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.Type != intstr.String || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
			t.Errorf("Service %s port %s targets %v, not a named port of %s", svc.Name, p.Name, p.TargetPort.String(), w.name)
		}
	}

	// The ServiceAccount, bound to read what discovery lists (above).
	if sas[spec.ServiceAccountName] == nil {
		t.Errorf("%s runs as ServiceAccount %q, which is not rendered", w.name, spec.ServiceAccountName)
	}

	checkPodSecurity(t, w.name, spec)
	checkContainer(t, w.name, c)
	checkConfig(t, w, cms)
}

type podOf struct {
	name     string
	selector *metav1.LabelSelector
	tmpl     corev1.PodTemplateSpec
	replicas int
}

// checkRBAC: the ServiceAccount may list and watch what kubernetes_sd_configs'
// roles pod, service and endpointslice read, and nothing more.
func checkRBAC(t *testing.T, sa string, roles map[string]*rbacv1.ClusterRole, bindings []*rbacv1.ClusterRoleBinding) {
	t.Helper()
	type grant struct{ group, resource string }
	need := []grant{{"", "pods"}, {"", "services"}, {"discovery.k8s.io", "endpointslices"}}
	got := map[grant][]string{}
	for _, b := range bindings {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == "vitals"
		}) {
			continue
		}
		role := roles[b.RoleRef.Name]
		if b.RoleRef.Kind != "ClusterRole" || role == nil {
			t.Errorf("ClusterRoleBinding %s binds %s %s, which is not rendered", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
			continue
		}
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					got[grant{g, res}] = append(got[grant{g, res}], r.Verbs...)
				}
			}
		}
	}
	for _, g := range need {
		verbs := got[g]
		slices.Sort(verbs)
		if !slices.Equal(verbs, []string{"list", "watch"}) {
			t.Errorf("ServiceAccount %s may %v %q in group %q; want list and watch", sa, verbs, g.resource, g.group)
		}
		delete(got, g)
	}
	for g, verbs := range got {
		t.Errorf("ServiceAccount %s may also %v %q in group %q, which discovery does not read", sa, verbs, g.resource, g.group)
	}
}

// checkPodSecurity checks the pod against the restricted Pod Security
// Standard (as the namespace enforces it) and the repository's defaults.
func checkPodSecurity(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s uses a host namespace", name)
	}
	psc := spec.SecurityContext
	if psc == nil || !ptrOr(psc.RunAsNonRoot, false) || ptrOr(psc.RunAsUser, 0) == 0 {
		t.Errorf("%s: pod security context %+v, want runAsNonRoot and a non-zero runAsUser", name, psc)
	} else if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccomp profile %+v, want RuntimeDefault", name, psc.SeccompProfile)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s mounts host path %s", name, v.HostPath.Path)
		}
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit == nil {
			t.Errorf("%s: emptyDir %s has no sizeLimit", name, v.Name)
		}
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s has no security context", name, c.Name)
		case ptrOr(sc.AllowPrivilegeEscalation, true):
			t.Errorf("%s/%s may escalate privileges", name, c.Name)
		case ptrOr(sc.Privileged, false):
			t.Errorf("%s/%s is privileged", name, c.Name)
		case !ptrOr(sc.ReadOnlyRootFilesystem, false):
			t.Errorf("%s/%s has a writable root file system", name, c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s capabilities %+v, want all dropped, none added", name, c.Name, sc.Capabilities)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("%s/%s uses host port %d", name, c.Name, p.HostPort)
			}
		}
	}
}

// checkContainer: requests and limits for CPU and memory, GOMEMLIMIT from
// the memory limit, and probes on the agent's /livez and /readyz.
func checkContainer(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s/%s: %s request %s, limit %s; want both, request <= limit", name, c.Name, res, req.String(), lim.String())
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" && e.ValueFrom.ResourceFieldRef.ContainerName == c.Name
	}) {
		t.Errorf("%s/%s: no GOMEMLIMIT from its memory limit", name, c.Name)
	}
	for probe, want := range map[string]struct {
		p    *corev1.Probe
		path string
	}{
		"startup":   {c.StartupProbe, "/livez"},
		"liveness":  {c.LivenessProbe, "/livez"},
		"readiness": {c.ReadinessProbe, "/readyz"},
	} {
		p := want.p
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s/%s: no HTTP %s probe", name, c.Name, probe)
			continue
		}
		if p.HTTPGet.Path != want.path {
			t.Errorf("%s/%s: %s probe on %s, want %s", name, c.Name, probe, p.HTTPGet.Path, want.path)
		}
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.StrVal }) {
			t.Errorf("%s/%s: %s probe on port %s, not a named port of the container", name, c.Name, probe, p.HTTPGet.Port.String())
		}
	}
}

// checkConfig loads the core.yaml that the pod mounts with the agent's own
// config loader, under the environment that the pod gives the agent, and
// checks that it listens on the container's port, reads its token from the
// mounted Secret, writes only below a writable volume and, for a sharded
// workload, is told its shard out of as many as there are replicas.
func checkConfig(t *testing.T, w podOf, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	c := w.tmpl.Spec.Containers[0]
	if len(c.Args) != 2 || c.Args[0] != "--config" {
		t.Fatalf("%s: args %v, want --config FILE", w.name, c.Args)
	}
	file := c.Args[1]
	mounts := map[string]corev1.Volume{} // mount path -> volume
	var cfgVol *corev1.Volume
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(w.tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("%s mounts volume %s, which it does not have", w.name, m.Name)
		}
		v := w.tmpl.Spec.Volumes[i]
		mounts[m.MountPath] = v
		if m.MountPath == path.Dir(file) {
			cfgVol = &v
		}
		if v.EmptyDir == nil && !m.ReadOnly {
			t.Errorf("%s mounts %s writable; only scratch space should be", w.name, m.Name)
		}
	}
	if cfgVol == nil || cfgVol.ConfigMap == nil {
		t.Fatalf("%s: %s is not in a mounted ConfigMap", w.name, file)
	}
	cm := cms[cfgVol.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("%s mounts ConfigMap %s, which is not rendered", w.name, cfgVol.ConfigMap.Name)
	}
	text, ok := cm.Data[path.Base(file)]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, path.Base(file))
	}

	// The environment as the kubelet gives it: downward API values made up,
	// $(VAR) references expanded from the variables before them.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandKube(e.Value, env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env[e.Name] = "node-a"
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "268435456"
		default:
			t.Errorf("%s: env %s comes from %+v, which this test does not know", w.name, e.Name, e.ValueFrom)
		}
	}
	reg := agent.NewRegistry()
	for name, f := range map[string]agent.Factory{
		security.Name:   security.Factory,
		extmanager.Name: extmanager.Factory,
	} {
		if err := reg.Register(name, f); err != nil {
			t.Fatal(err)
		}
	}
	// This test is no StatefulSet pod: give the shard the last pod's
	// hostname would (vitals-cluster-<replicas-1>).
	lookup := maps.Clone(env)
	if strings.HasPrefix(w.name, "StatefulSet/") {
		lookup["VITALS_SHARD"] = fmt.Sprintf("%d/%d", w.replicas-1, w.replicas)
	}
	cfg, err := agent.Parse(t.Context(), file, []byte(text), reg, envconfig.MapLookuper(lookup))
	if err != nil {
		t.Fatalf("%s: ConfigMap %s: %s: %v", w.name, cm.Name, file, err)
	}
	// Each variable the config refers to, $(NAME) in a kubernetes_sd
	// selector, is one the pod sets: without it the config is refused.
	for name := range env {
		if !strings.Contains(text, "$("+name+")") {
			continue
		}
		without := maps.Clone(lookup)
		delete(without, name)
		if _, err := agent.Parse(t.Context(), file, []byte(text), reg, envconfig.MapLookuper(without)); err == nil || !strings.Contains(err.Error(), "$("+name+")") {
			t.Errorf("%s: without %s the config loads (%v); the agent does not use it", w.name, name, err)
		}
	}
	for _, m := range kubeVarRE.FindAllStringSubmatch(text, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("%s: core.yaml refers to $(%s), which the pod does not set", w.name, m[1])
		}
	}
	for _, name := range []string{security.Name, extmanager.Name} {
		if pc := cfg.Plugin(name); !pc.Enabled || !pc.Required {
			t.Errorf("%s: %s enabled %v, required %v; want both", w.name, name, pc.Enabled, pc.Required)
		}
	}
	_, port, _ := strings.Cut(cfg.Core.APIGateway.Listen, ":")
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return strconv.Itoa(int(p.ContainerPort)) == port }) {
		t.Errorf("%s: the agent listens on %s, not on a container port", w.name, cfg.Core.APIGateway.Listen)
	}
	if host, _, _ := strings.Cut(cfg.Core.APIGateway.Listen, ":"); host != "0.0.0.0" {
		t.Errorf("%s: the agent listens on %s; the kubelet's probes and Prometheus reach it on the pod's address", w.name, cfg.Core.APIGateway.Listen)
	}

	// Files: the token from a read-only Secret mount, the audit log on a
	// scratch volume (the root file system is read-only).
	secCfg := securitySection(t, text)
	if len(secCfg.Tokens) == 0 {
		t.Errorf("%s: security has no tokens: the admin API on the pod network would be open", w.name)
	}
	for _, tok := range secCfg.Tokens {
		if v, ok := mounts[path.Dir(tok.File)]; !ok || v.Secret == nil {
			t.Errorf("%s: token file %s is not in a mounted Secret", w.name, tok.File)
		}
	}
	if v, ok := mounts[path.Dir(secCfg.Audit.Path)]; !ok || v.EmptyDir == nil {
		t.Errorf("%s: audit log %s is not on a writable volume", w.name, secCfg.Audit.Path)
	}

	// A StatefulSet is sharded over its replicas: shard.count equals them,
	// and the index comes from each pod's hostname, so none is set.
	if strings.HasPrefix(w.name, "StatefulSet/") {
		shard := extmanagerShard(t, text)
		if shard.Count != w.replicas || shard.Index != nil {
			t.Errorf("%s: extmanager shard %+v for %d replicas; want count %d and no index (the pod's ordinal)", w.name, shard, w.replicas, w.replicas)
		}
		if _, ok := env["VITALS_SHARD"]; ok {
			t.Errorf("%s sets VITALS_SHARD, which would give every replica one shard", w.name)
		}
	}
}

// extmanagerShard reads the extmanager's shard keys from a core.yaml.
func extmanagerShard(t *testing.T, text string) (shard struct {
	Count int  `json:"count"`
	Index *int `json:"index"`
}) {
	t.Helper()
	var f struct {
		Core struct {
			APIGateway struct {
				Plugins struct {
					Extmanager struct {
						Shard *struct {
							Count int  `json:"count"`
							Index *int `json:"index"`
						} `json:"shard"`
					} `json:"extmanager"`
				} `json:"plugins"`
			} `json:"api_gateway"`
		} `json:"core"`
	}
	if err := yaml.Unmarshal([]byte(text), &f); err != nil {
		t.Fatal(err)
	}
	if p := f.Core.APIGateway.Plugins.Extmanager.Shard; p != nil {
		shard.Count, shard.Index = p.Count, p.Index
	}
	return shard
}

type securityConfig struct {
	Tokens []struct {
		File string `json:"file"`
	} `json:"tokens"`
	Audit struct {
		Path string `json:"path"`
	} `json:"audit"`
}

// securitySection reads the security section's token files and audit path
// from a core.yaml (the plugin keeps its decoded config to itself).
func securitySection(t *testing.T, text string) securityConfig {
	t.Helper()
	var f struct {
		Core struct {
			APIGateway struct {
				Plugins struct {
					Security securityConfig `json:"security"`
				} `json:"plugins"`
			} `json:"api_gateway"`
		} `json:"core"`
	}
	if err := yaml.Unmarshal([]byte(text), &f); err != nil {
		t.Fatal(err)
	}
	return f.Core.APIGateway.Plugins.Security
}

var kubeVarRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandKube expands $(VAR) in an env value from the variables defined
// before it, as the kubelet does; an unknown reference stays as written.
func expandKube(s string, env map[string]string) string {
	return kubeVarRE.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// scheme knows every type the manifests may hold.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

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
