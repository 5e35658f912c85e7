package deploy

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/goccy/go-yaml"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	"github.com/vitals-dev/vitals/plugins/security"
	"github.com/vitals-dev/vitals/plugins/statuspage"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func load(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadFiles(t, nil, "compose.yaml")
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

// loadFiles loads compose files of the repository, later ones overriding
// earlier ones, with env as the only environment (none of the process's).
func loadFiles(t *testing.T, env []string, files ...string) (*types.Project, error) {
	t.Helper()
	r := root(t)
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(r, f))
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(r), cli.WithResolvedPaths(true), cli.WithEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(t.Context())
}

// TestPublishedOnLoopback: without tokens, compose publishes every port,
// the agent's first, on 127.0.0.1 only.
func TestPublishedOnLoopback(t *testing.T) {
	p := load(t)
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q, want 127.0.0.1", name, port.Published, port.HostIP)
			}
		}
	}
	if v := p.Services["vitals"]; len(v.Ports) != 1 || v.Ports[0].Published != "9464" {
		t.Errorf("vitals publishes %+v, want 127.0.0.1:9464", v.Ports)
	}
	if agentConfig(t, nil).Plugin(security.Name).Enabled {
		t.Error("security is enabled in deploy/vitals/core.yaml without tokens")
	}
}

// TestTokensPublishTheAgent: deploy/compose.tokens.yaml publishes the
// agent on every interface only with VITALS_TOKEN_ADMIN set, and then runs
// the security plugin, required, with that token.
func TestTokensPublishTheAgent(t *testing.T) {
	_, err := loadFiles(t, nil, "compose.yaml", "deploy/compose.tokens.yaml")
	if err == nil || !strings.Contains(err.Error(), "set VITALS_TOKEN_ADMIN") {
		t.Errorf("without VITALS_TOKEN_ADMIN: %v, want an error asking for it", err)
	}

	p, err := loadFiles(t, []string{"VITALS_TOKEN_ADMIN=s3cret"}, "compose.yaml", "deploy/compose.tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Services["vitals"]
	if len(v.Ports) != 1 || v.Ports[0].HostIP != "" || v.Ports[0].Published != "9464" || v.Ports[0].Target != 9464 {
		t.Errorf("vitals publishes %+v, want 9464 on every interface, once", v.Ports)
	}
	env := map[string]string{}
	for k, val := range v.Environment {
		if val != nil {
			env[k] = *val
		}
	}
	if env["VITALS_TOKEN_ADMIN"] != "s3cret" {
		t.Errorf("VITALS_TOKEN_ADMIN is %q in the agent's environment", env["VITALS_TOKEN_ADMIN"])
	}
	if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" {
		t.Error("the override dropped the agent's other environment")
	}
	// The agent, with that environment, runs security with the token.
	cfg := agentConfig(t, env)
	pc := cfg.Plugin(security.Name)
	if !pc.Enabled || !pc.Required {
		t.Fatalf("security enabled %v, required %v; want both", pc.Enabled, pc.Required)
	}
	var sec security.Config
	if err := pc.Section.Decode(&sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.Tokens) != 1 || sec.Tokens[0].Env != "VITALS_TOKEN_ADMIN" || sec.Tokens[0].Role != security.RoleAdmin {
		t.Errorf("security tokens %+v, want one admin token from VITALS_TOKEN_ADMIN", sec.Tokens)
	}
	// Only the agent is published beyond loopback.
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if name != "vitals" && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q with tokens", name, port.Published, port.HostIP)
			}
		}
	}
}

// mounts maps each bind mount's target to its source, relative to the repo.
func mounts(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		rel, err := filepath.Rel(root(t), v.Source)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%s: mount %s is outside the repository", s.Name, v.Source)
		}
		out[v.Target] = filepath.ToSlash(rel)
	}
	return out
}

func flag(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestServices(t *testing.T) {
	p := load(t)
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"aisim-llm", "aisim-ollama", "alertmanager", "grafana", "jaeger", "prometheus", "vitals"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
}

// TestMountsExist checks that every bind-mounted file or directory is in
// the repository and read-only.
func TestMountsExist(t *testing.T) {
	p := load(t)
	n := 0
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			n++
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounted %s: %v", s.Name, v.Source, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s: mount %s is writable", s.Name, v.Target)
			}
		}
	}
	if n < 8 {
		t.Errorf("only %d bind mounts", n)
	}
}

// TestConfigsAreTheRepos checks that each service runs the repository's
// config: the file its flags name is the one mounted from the repo.
func TestConfigsAreTheRepos(t *testing.T) {
	p := load(t)
	for _, tc := range []struct {
		service, flag, source string
	}{
		{"vitals", "--config", "deploy/vitals/core.yaml"},
		{"prometheus", "--config.file", "deploy/prometheus/prometheus.yml"},
		{"alertmanager", "--config.file", "alerts/alertmanager.yml"},
	} {
		t.Run(tc.service, func(t *testing.T) {
			s := p.Services[tc.service]
			target := flag(s.Command, tc.flag)
			if target == "" {
				t.Fatalf("command %v has no %s", s.Command, tc.flag)
			}
			if got := mounts(t, s)[target]; got != tc.source {
				t.Errorf("%s %s is mounted from %q, want %s", tc.flag, target, got, tc.source)
			}
		})
	}

	// Prometheus loads the repo's rules from where prometheus.yml says.
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(root(t), "deploy/prometheus/prometheus.yml"), &prom)
	pm := mounts(t, p.Services["prometheus"])
	if len(prom.RuleFiles) != 1 || pm[prom.RuleFiles[0]] != "alerts/vitals.rules.yml" {
		t.Errorf("rule_files %v, mounted %v: want alerts/vitals.rules.yml", prom.RuleFiles, pm)
	}
	am := prom.Alerting.Alertmanagers
	if len(am) != 1 || len(am[0].StaticConfigs) != 1 || !slices.Equal(am[0].StaticConfigs[0].Targets, []string{"alertmanager:9093"}) {
		t.Errorf("alertmanagers %+v, want alertmanager:9093", am)
	}

	// The agent listens where Prometheus scrapes it (job vitals, as the
	// rules expect).
	cfg := agentConfig(t, nil)
	_, port, err := net.SplitHostPort(cfg.Core.APIGateway.Listen)
	if err != nil || !strings.HasPrefix(cfg.Core.APIGateway.Listen, "0.0.0.0:") {
		t.Errorf("agent listens on %q, want 0.0.0.0:PORT", cfg.Core.APIGateway.Listen)
	}
	scraped := false
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName == "vitals" {
			scraped = len(sc.StaticConfigs) == 1 && slices.Equal(sc.StaticConfigs[0].Targets, []string{"vitals:" + port})
		}
	}
	if !scraped {
		t.Errorf("no scrape job vitals with target vitals:%s: %+v", port, prom.ScrapeConfigs)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// agentConfig parses deploy/vitals/core.yaml as the agent does, with the
// plugins it uses and env as its environment.
func agentConfig(t *testing.T, env map[string]string) *agent.Config {
	t.Helper()
	reg := agent.NewRegistry()
	for name, f := range map[string]agent.Factory{
		messagebus.Name: messagebus.Factory,
		extmanager.Name: extmanager.Factory,
		statuspage.Name: statuspage.Factory,
		security.Name:   security.Factory,
	} {
		if err := reg.Register(name, f); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := agent.LoadFile(t.Context(), filepath.Join(root(t), "deploy/vitals/core.yaml"), reg, envconfig.MapLookuper(env))
	if err != nil {
		t.Fatalf("deploy/vitals/core.yaml: %v", err)
	}
	return cfg
}

// TestAgentAndAISims checks that vitals and the aisim services are built
// from the Dockerfile's stages, that the aisim services are of two kinds and
// listen on 0.0.0.0, and that the agent's targets are exactly them.
func TestAgentAndAISims(t *testing.T) {
	p := load(t)
	stages := dockerStages(t)
	for name, target := range map[string]string{"vitals": "vitals", "aisim-llm": "aisim", "aisim-ollama": "aisim"} {
		s := p.Services[name]
		if s.Build == nil || s.Build.Target != target || !stages[target] {
			t.Errorf("%s: build %+v, want Dockerfile target %s (stages %v)", name, s.Build, target, stages)
		}
	}
	sims := map[string]string{} // service:port → kind
	kinds := map[string]bool{}
	for _, name := range []string{"aisim-llm", "aisim-ollama"} {
		s := p.Services[name]
		kind, listen := flag(s.Command, "--kind"), flag(s.Command, "--listen")
		host, port, err := net.SplitHostPort(listen)
		if err != nil || host != "0.0.0.0" || kind == "" {
			t.Errorf("%s: command %v, want --kind K --listen 0.0.0.0:PORT", name, s.Command)
			continue
		}
		sims[name+":"+port] = kind
		kinds[kind] = true
	}
	if len(kinds) != 2 {
		t.Errorf("aisim kinds %v, want two different", kinds)
	}
	var ext extmanager.Config
	if err := agentConfig(t, nil).Plugin(extmanager.Name).Section.Decode(&ext); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ext.Targets {
		u, err := url.Parse(tg.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, u.Host)
	}
	var want []string
	for hp := range sims {
		want = append(want, hp)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("agent targets %v, want the aisim services %v", got, want)
	}
	if !agentConfig(t, nil).Plugin(statuspage.Name).Enabled {
		t.Error("status_page is not enabled in deploy/vitals/core.yaml")
	}
}

func dockerStages(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	from := regexp.MustCompile(`(?mi)^FROM\s+(\S+)\s+AS\s+(\S+)`)
	for _, m := range from.FindAllStringSubmatch(string(b), -1) {
		out[m[2]] = true
		if m[2] != "build" && !strings.HasPrefix(m[1], "gcr.io/distroless/static") {
			t.Errorf("stage %s runs on %s, want distroless static", m[2], m[1])
		}
	}
	s := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "USER nonroot:nonroot"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	return out
}

// TestTracesAndGrafana checks that the agent exports OTLP to Jaeger and
// that Grafana is provisioned with the repo's data source, provider and
// every dashboard, for anonymous viewers.
func TestTracesAndGrafana(t *testing.T) {
	p := load(t)
	v := p.Services["vitals"]
	ep := v.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if ep == nil || *ep != "http://jaeger:4318" {
		t.Errorf("vitals OTEL_EXPORTER_OTLP_ENDPOINT %v, want http://jaeger:4318", ep)
	}
	if e := p.Services["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"]; e == nil || *e != "true" {
		t.Error("jaeger does not receive OTLP")
	}

	g := p.Services["grafana"]
	for k, want := range map[string]string{"GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"} {
		if e := g.Environment[k]; e == nil || *e != want {
			t.Errorf("grafana %s = %v, want %s", k, e, want)
		}
	}
	gm := mounts(t, g)
	if gm["/etc/grafana/provisioning/datasources"] != "dashboards/provisioning/datasources" ||
		gm["/etc/grafana/provisioning/dashboards"] != "dashboards/provisioning/dashboards" {
		t.Errorf("grafana provisioning mounts %v", gm)
	}
	var prov struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(root(t), "dashboards/provisioning/dashboards/vitals.yml"), &prov)
	if len(prov.Providers) != 1 {
		t.Fatalf("providers %+v", prov)
	}
	dir := prov.Providers[0].Options.Path
	files, _ := filepath.Glob(filepath.Join(root(t), "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	for _, f := range files {
		name := filepath.Base(f)
		if got := gm[dir+"/"+name]; got != "dashboards/"+name {
			t.Errorf("dashboard %s is not mounted in %s (mounts %v)", name, dir, gm)
		}
	}
	type datasource struct {
		Name, Type, UID, URL string
		JSONData             struct {
			ExemplarTraceIDDestinations []struct {
				Name          string `yaml:"name"`
				DatasourceUID string `yaml:"datasourceUid"`
			} `yaml:"exemplarTraceIdDestinations"`
		} `yaml:"jsonData"`
	}
	var prom, traces struct {
		Datasources []datasource `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(root(t), "dashboards/provisioning/datasources/prometheus.yml"), &prom)
	if len(prom.Datasources) != 1 || prom.Datasources[0].URL != "http://prometheus:9090" || prom.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasource %+v, want a prometheus at http://prometheus:9090", prom)
	}
	// The traces data source is the Jaeger that the agent exports to, and
	// Prometheus keeps the exemplars that link to it.
	readYAML(t, filepath.Join(root(t), "dashboards/provisioning/datasources/jaeger.yml"), &traces)
	if len(traces.Datasources) != 1 || traces.Datasources[0].URL != "http://jaeger:16686" || traces.Datasources[0].Type != "jaeger" || traces.Datasources[0].UID == "" {
		t.Fatalf("traces datasource %+v, want a jaeger with a uid at http://jaeger:16686", traces)
	}
	// A point's exemplar opens its trace: the exemplar label the agent
	// writes (trace_id) links to the traces data source by its uid.
	linked := false
	for _, d := range prom.Datasources[0].JSONData.ExemplarTraceIDDestinations {
		if d.Name == "trace_id" && d.DatasourceUID == traces.Datasources[0].UID {
			linked = true
		}
	}
	if !linked {
		t.Errorf("prometheus exemplarTraceIdDestinations %+v do not link trace_id to the traces data source (uid %q)",
			prom.Datasources[0].JSONData.ExemplarTraceIDDestinations, traces.Datasources[0].UID)
	}
	if _, ok := p.Services["jaeger"]; !ok {
		t.Error("no jaeger service")
	}
	if !slices.Contains(p.Services["prometheus"].Command, "--enable-feature=exemplar-storage") {
		t.Errorf("prometheus command %v does not keep exemplars", p.Services["prometheus"].Command)
	}
}
