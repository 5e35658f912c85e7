package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/vitals-dev/vitals/health"
)

var update = flag.Bool("update", false, "write the dashboards' JSON from build.go")

func init() { plugins.RegisterDefaultPlugins() }

// TestGenerated checks that the committed JSON is what build.go builds
// (-update writes it).
func TestGenerated(t *testing.T) {
	built, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	for file, d := range built {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n')
		if *update {
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test ./dashboards -run TestGenerated -update)", err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from what build.go builds: go test ./dashboards -run TestGenerated -update", file)
		}
	}
	files, _ := filepath.Glob("*.json")
	if len(files) != len(built) {
		t.Errorf("JSON files %v, build.go builds %d", files, len(built))
	}
}

// load reads every committed dashboard strictly, as the SDK's schema says.
func load(t *testing.T) map[string]dashboard.Dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	out := map[string]dashboard.Dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard.Dashboard
		if err := d.UnmarshalJSONStrict(b); err != nil {
			t.Errorf("%s: strict load: %v", f, err)
			continue
		}
		if err := d.Validate(); err != nil {
			t.Errorf("%s: validate: %v", f, err)
			continue
		}
		out[f] = d
	}
	return out
}

func TestLoadStrict(t *testing.T) {
	ds := load(t)
	uids := map[string]string{}
	for f, d := range ds {
		if d.Uid == nil || *d.Uid == "" {
			t.Errorf("%s: no uid", f)
		} else if other, ok := uids[*d.Uid]; ok {
			t.Errorf("%s and %s share uid %s", f, other, *d.Uid)
		} else {
			uids[*d.Uid] = f
		}
		ids := map[uint32]bool{}
		for _, p := range d.Panels {
			var id uint32
			switch {
			case p.Panel != nil && p.Panel.Id != nil:
				id = *p.Panel.Id
			case p.RowPanel != nil:
				id = p.RowPanel.Id
			}
			if id == 0 || ids[id] {
				t.Errorf("%s: panel id %d missing or repeated", f, id)
			}
			ids[id] = true
		}
		if d.Title == nil || !strings.HasPrefix(*d.Title, "Vitals / ") {
			t.Errorf("%s: title %v, want \"Vitals / ...\"", f, d.Title)
		}
	}
}

// TestDatasourceVariable checks that each dashboard has a datasource
// variable of type prometheus and that every panel, target, variable and
// annotation uses it, never a fixed uid.
func TestDatasourceVariable(t *testing.T) {
	for f, d := range load(t) {
		t.Run(f, func(t *testing.T) {
			found := false
			for _, v := range d.Templating.List {
				if v.Name == "datasource" {
					found = v.Type == "datasource" && v.Query != nil && v.Query.String != nil && *v.Query.String == "prometheus"
				} else if v.Datasource != nil && (v.Datasource.Uid == nil || *v.Datasource.Uid != "${datasource}") {
					t.Errorf("variable %s: datasource %+v", v.Name, v.Datasource)
				}
			}
			if !found {
				t.Error("no variable \"datasource\" of type datasource for prometheus")
			}
			panels := 0
			for _, p := range d.Panels {
				if p.Panel == nil {
					continue
				}
				panels++
				pp := p.Panel
				if pp.Datasource == nil || pp.Datasource.Uid == nil || *pp.Datasource.Uid != "${datasource}" {
					t.Errorf("panel %q: datasource %+v, want uid ${datasource}", title(pp.Title), pp.Datasource)
				}
				if len(pp.Targets) == 0 {
					t.Errorf("panel %q: no queries", title(pp.Title))
				}
				b, _ := json.Marshal(pp.Targets)
				if strings.Count(string(b), `"uid":"${datasource}"`) != len(pp.Targets) {
					t.Errorf("panel %q: a target without the datasource variable: %s", title(pp.Title), b)
				}
			}
			if panels == 0 {
				t.Error("no panels")
			}
			for _, a := range d.Annotations.List {
				if a.BuiltIn != nil && *a.BuiltIn == 1 {
					continue
				}
				if a.Datasource == nil || a.Datasource.Uid == nil || *a.Datasource.Uid != "${datasource}" {
					t.Errorf("annotation %s: datasource %+v", a.Name, a.Datasource)
				}
			}
		})
	}
}

func title(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestQueriesParse parses every query as PromQL, with Grafana's variables
// expanded, and checks it names only vitals_, go_ and process_ metrics.
func TestQueriesParse(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 30 {
		t.Fatalf("only %d queries", len(qs))
	}
	p := parser.NewParser(parser.Options{})
	for _, q := range qs {
		expr := Expand(q.Expr, nil)
		e, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s / %s: %v\n%s", q.File, q.Panel, err, expr)
			continue
		}
		names := MetricNames(e)
		if len(names) == 0 {
			t.Errorf("%s / %s: no metric in %s", q.File, q.Panel, expr)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "vitals_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				t.Errorf("%s / %s: metric %s is not the agent's", q.File, q.Panel, n)
			}
		}
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		vars     map[string]string
		want     string
	}{
		{"builtins", `rate(x[$__rate_interval])`, nil, `rate(x[1m])`},
		{"unset is any", `x{job=~"$job"}`, nil, `x{job=~".*"}`},
		{"braces", `x{plugin=~"${plugin}"}`, map[string]string{"plugin": "llm"}, `x{plugin=~"llm"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Expand(tc.in, tc.vars); got != tc.want {
				t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestProvisioning checks the provisioning files compose.yaml mounts: one
// default Prometheus data source whose exemplars (trace_id) link to a
// provisioned traces data source, and a provider for the directory the
// dashboards are mounted in.
func TestProvisioning(t *testing.T) {
	type datasource struct {
		Name, Type, URL, Access, UID string
		IsDefault                    bool `yaml:"isDefault"`
		JSONData                     struct {
			Exemplars []struct {
				Name          string `yaml:"name"`
				DatasourceUID string `yaml:"datasourceUid"`
			} `yaml:"exemplarTraceIdDestinations"`
		} `yaml:"jsonData"`
	}
	files, err := filepath.Glob("provisioning/datasources/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[string]datasource{}
	var defaults []datasource
	for _, f := range files {
		var dsf struct {
			APIVersion  int          `yaml:"apiVersion"`
			Datasources []datasource `yaml:"datasources"`
		}
		readYAML(t, f, &dsf)
		if dsf.APIVersion != 1 || len(dsf.Datasources) == 0 {
			t.Errorf("%s: %+v", f, dsf)
		}
		for _, d := range dsf.Datasources {
			if d.UID == "" || d.URL == "" {
				t.Errorf("%s: data source %q without uid or url", f, d.Name)
			}
			byUID[d.UID] = d
			if d.IsDefault {
				defaults = append(defaults, d)
			}
		}
	}
	if len(defaults) != 1 || defaults[0].Type != "prometheus" {
		t.Fatalf("default data sources %+v, want one Prometheus", defaults)
	}
	ex := defaults[0].JSONData.Exemplars
	if len(ex) != 1 || ex[0].Name != "trace_id" {
		t.Fatalf("Prometheus exemplar destinations %+v, want trace_id", ex)
	}
	if tr, ok := byUID[ex[0].DatasourceUID]; !ok || tr.Type != "jaeger" {
		t.Errorf("exemplars link to data source %q (%+v), want a provisioned jaeger data source", ex[0].DatasourceUID, tr)
	}

	var pf struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "provisioning/dashboards/vitals.yml", &pf)
	if pf.APIVersion != 1 || len(pf.Providers) != 1 || pf.Providers[0].Type != "file" || pf.Providers[0].Options.Path == "" {
		t.Errorf("providers: %+v", pf)
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

// MetricNames is in the test so that the parser stays a test-only
// dependency; e2e has its own copy.
func MetricNames(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return nil
	})
	return out
}

// TestLatencyPanelsShowExemplars checks that every query of a probe latency
// histogram asks for exemplars, so that a point opens the check's trace,
// and reads the native histogram as well as the classic buckets.
func TestLatencyPanelsShowExemplars(t *testing.T) {
	n := 0
	for f, d := range load(t) {
		for _, p := range d.Panels {
			if p.Panel == nil {
				continue
			}
			for _, tg := range p.Panel.Targets {
				b, _ := json.Marshal(tg)
				var q struct {
					Expr     string `json:"expr"`
					Exemplar bool   `json:"exemplar"`
				}
				_ = json.Unmarshal(b, &q)
				for m := range tracedHistograms {
					if strings.Contains(q.Expr, m+"_bucket") {
						n++
						if !q.Exemplar {
							t.Errorf("%s / %s: %s without exemplars", f, title(p.Panel.Title), q.Expr)
						}
						// The engine exports native histograms, classic
						// buckets only when asked to.
						if !strings.Contains(q.Expr, "(rate("+m+"{") {
							t.Errorf("%s / %s: %s does not read the native histogram", f, title(p.Panel.Title), q.Expr)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Error("no latency histogram query found")
	}
}

// TestHealthStates: the state panels name every state of the health
// engine, in the engine's order, each with a colour of its own.
func TestHealthStates(t *testing.T) {
	if len(healthStates) != len(health.States) {
		t.Fatalf("%d states mapped, the engine has %d", len(healthStates), len(health.States))
	}
	colors := map[string]bool{}
	for i, st := range health.States {
		if healthStates[i].name != string(st) {
			t.Errorf("state %d is %q, the engine's is %q", i, healthStates[i].name, st)
		}
		if colors[healthStates[i].color] {
			t.Errorf("state %s shares its colour %s", st, healthStates[i].color)
		}
		colors[healthStates[i].color] = true
		if !strings.Contains(healthStateExpr(sel), `state="`+string(st)+`"`) {
			t.Errorf("the state expression leaves out %s", st)
		}
	}
}

// TestSaturationRow: both AI dashboards have a Saturation row with the
// server's running and waiting requests, KV cache and tokens per second
// from its own counter.
func TestSaturationRow(t *testing.T) {
	for _, f := range []string{"ai-plugins-overview.json", "ai-plugin-detail.json"} {
		d := load(t)[f]
		var in bool
		var exprs []string
		for _, p := range d.Panels {
			if p.RowPanel != nil {
				in = p.RowPanel.Title != nil && *p.RowPanel.Title == "Saturation"
				continue
			}
			if !in || p.Panel == nil {
				continue
			}
			for _, tg := range p.Panel.Targets {
				b, _ := json.Marshal(tg)
				var q struct {
					Expr string `json:"expr"`
				}
				_ = json.Unmarshal(b, &q)
				exprs = append(exprs, q.Expr)
			}
		}
		all := strings.Join(exprs, "\n")
		for _, want := range []string{"vitals_ai_requests_running{", "vitals_ai_requests_waiting{", "vitals_ai_kv_cache_usage_ratio{",
			"rate(vitals_ai_server_generated_tokens_total{"} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: the Saturation row does not read %s (it has %q)", f, want, exprs)
			}
		}
	}
}
