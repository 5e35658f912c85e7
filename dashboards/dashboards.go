package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

// Files holds the committed dashboard JSON files.
//
//go:embed *.json
var Files embed.FS

// Query is one PromQL expression of a dashboard: a panel target, a template
// variable's query or an annotation.
type Query struct {
	File  string // dashboard file
	Panel string // panel title, "variable NAME" or "annotation NAME"
	Expr  string
}

// Queries returns every PromQL expression of the committed dashboards, in
// file and panel order.
func Queries() ([]Query, error) {
	names, err := fs.Glob(Files, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Query
	for _, n := range names {
		b, err := Files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		q, err := queriesOf(n, b)
		if err != nil {
			return nil, err
		}
		out = append(out, q...)
	}
	return out, nil
}

type rawPanel struct {
	Title   string                  `json:"title"`
	Targets []struct{ Expr string } `json:"targets"`
	Panels  []rawPanel              `json:"panels"`
}

func queriesOf(file string, b []byte) ([]Query, error) {
	var d struct {
		Panels     []rawPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", file, err)
	}
	var out []Query
	var walk func([]rawPanel)
	walk = func(ps []rawPanel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if t.Expr != "" {
					out = append(out, Query{File: file, Panel: p.Title, Expr: t.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		s, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			s, _ = m["query"].(string)
		}
		if e := VariableExpr(s); e != "" {
			out = append(out, Query{File: file, Panel: "variable " + v.Name, Expr: e})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, Query{File: file, Panel: "annotation " + a.Name, Expr: a.Expr})
		}
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)

// VariableExpr returns the PromQL inside a Grafana Prometheus variable
// query: the selector of label_values(SELECTOR, label), or a
// query_result(EXPR)'s EXPR. It returns "" for label_names() and
// label_values(label) without a selector.
func VariableExpr(q string) string {
	q = strings.TrimSpace(q)
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if strings.HasPrefix(q, "query_result(") && strings.HasSuffix(q, ")") {
		return q[len("query_result(") : len(q)-1]
	}
	return ""
}

// Grafana's built-in interval variables, as Expand replaces them.
var builtins = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "30s",
	"$__range":         "1h",
}

var variable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// Expand replaces Grafana variables in a query so that Prometheus can run
// it: the interval built-ins by fixed durations, and $name or ${name} by
// vars[name], or ".*" when vars has no value (every variable of these
// dashboards sits in a =~ matcher).
func Expand(expr string, vars map[string]string) string {
	for k, v := range builtins {
		expr = strings.ReplaceAll(expr, k, v)
	}
	return variable.ReplaceAllStringFunc(expr, func(m string) string {
		name := variable.FindStringSubmatch(m)[1]
		if v, ok := vars[name]; ok {
			return v
		}
		return ".*"
	})
}
