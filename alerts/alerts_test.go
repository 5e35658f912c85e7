package alerts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// run runs a tool and returns its output; it fails the test on a non-zero
// exit.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e2etest.Tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, "promtool", "check", "rules", "vitals.rules.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	files, err := filepath.Glob("*_test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no *_test.yml: %v", err)
	}
	out := run(t, "promtool", append([]string{"test", "rules"}, files...)...)
	if strings.Contains(out, "FAILED") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

func TestAmtoolCheckConfig(t *testing.T) {
	out := run(t, "amtool", "check-config", "alertmanager.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("amtool check-config:\n%s", out)
	}
}

// TestRoutes checks that each severity reaches its receiver.
func TestRoutes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels []string
		want   string
	}{
		{"critical pages", []string{"alertname=VitalsAIPluginUnhealthy", "severity=critical", "plugin=llm"}, "pager"},
		{"warning to the team", []string{"alertname=VitalsAIPluginDegraded", "severity=warning", "plugin=llm"}, "team"},
		{"no severity to the default", []string{"alertname=Other"}, "team"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=alertmanager.yml"}, tc.labels...)
			// The last line is the receiver; amtool may warn before it.
			lines := strings.Split(strings.TrimSpace(run(t, "amtool", args...)), "\n")
			if got := lines[len(lines)-1]; got != tc.want {
				t.Errorf("routed to %q, want %q", got, tc.want)
			}
		})
	}
}

type rulesFile struct {
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

// TestEveryAlertHasWhatItNeeds checks that each alert has a severity the
// routes know, a scope the inhibition rules know, a summary, a description,
// a runbook section in README.md that runbook_url points at, and unit tests
// in which it both fires and does not.
func TestEveryAlertHasWhatItNeeds(t *testing.T) {
	b, err := os.ReadFile("vitals.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	tests := ""
	files, _ := filepath.Glob("*_test.yml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests += string(b)
	}
	heading := regexp.MustCompile(`(?m)^### (\w+)$`)
	sections := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(string(readme), -1) {
		sections[m[1]] = true
	}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			t.Run(r.Alert, func(t *testing.T) {
				if s := r.Labels["severity"]; s != "critical" && s != "warning" {
					t.Errorf("severity %q, want critical or warning", s)
				}
				if s := r.Labels["scope"]; s != "agent" && s != "ai_plugin" {
					t.Errorf("scope %q, want agent or ai_plugin", s)
				}
				for _, k := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[k] == "" {
						t.Errorf("no %s annotation", k)
					}
				}
				if want := "alerts/README.md#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], want) {
					t.Errorf("runbook_url %q does not end in %q", r.Annotations["runbook_url"], want)
				}
				if !sections[r.Alert] {
					t.Errorf("README.md has no runbook section \"### %s\"", r.Alert)
				}
				// Firing: an expected alert of this name; not firing: an
				// empty exp_alerts for it (the unit test files keep both).
				firing := regexp.MustCompile(`alertname: ` + r.Alert + `\n\s+exp_alerts:\n\s+- exp_labels`)
				quiet := regexp.MustCompile(`alertname: ` + r.Alert + `\n\s+exp_alerts: \[\]`)
				if !firing.MatchString(tests) {
					t.Errorf("no unit test in which %s fires", r.Alert)
				}
				if !quiet.MatchString(tests) {
					t.Errorf("no unit test in which %s stays quiet", r.Alert)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no alerts in vitals.rules.yml")
	}
}
