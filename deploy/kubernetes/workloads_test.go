package kubernetes

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/sethvargo/go-envconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/security"
)

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
