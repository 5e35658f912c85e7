package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// amtoolQuery runs `amtool alert query` against the stack's Alertmanager
// and returns "alertname/plugin" of each alert it lists (active alerts only:
// neither inhibited nor silenced).
func (s *stack) amtoolQuery(ctx context.Context, t *testing.T, matchers ...string) ([]string, error) {
	t.Helper()
	args := append([]string{"alert", "query", "--alertmanager.url=http://" + s.am, "-o", "json"}, matchers...)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, e2etest.Tool(t, "amtool"), args...).Output()
	if err != nil {
		return nil, fmt.Errorf("amtool %s: %w", strings.Join(args, " "), err)
	}
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(out, &alerts); err != nil {
		return nil, fmt.Errorf("amtool output %q: %w", out, err)
	}
	var got []string
	for _, a := range alerts {
		got = append(got, a.Labels["alertname"]+"/"+a.Labels["plugin"])
	}
	slices.Sort(got)
	return got, nil
}

// waitAmtool polls amtool until it lists exactly want.
func (s *stack) waitAmtool(ctx context.Context, t *testing.T, want []string, matchers ...string) {
	t.Helper()
	err := e2etest.Poll(ctx, 60*time.Second, 200*time.Millisecond, fmt.Sprintf("amtool lists %v", want), func(ctx context.Context) error {
		got, err := s.amtoolQuery(ctx, t, matchers...)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("amtool lists %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// agentMetric returns the value of the first series on the agent's
// /metrics whose line starts with prefix (name and labels as written).
func (s *stack) agentMetric(ctx context.Context, prefix string) (string, error) {
	b, err := e2etest.Get(ctx, "http://"+s.agent+"/metrics")
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + ` (\S+)$`)
	if m := re.FindSubmatch(b); m != nil {
		return string(m[1]), nil
	}
	return "", fmt.Errorf("no %s on /metrics", prefix)
}

// TestAlertsWithoutPrometheus runs the agent with core.alerting pushing to
// Debian's Alertmanager, configured with alerts/alertmanager.yml, and no
// Prometheus at all: a dead AI server pages and resolves, a stuck one
// pages once (stuck, its unhealthy alert inhibited), and the alerts of an
// agent that was killed resolve on their own at their endsAt.
func TestAlertsWithoutPrometheus(t *testing.T) {
	amBin := e2etest.Tool(t, "prometheus-alertmanager")
	e2etest.Tool(t, "amtool")
	ctx := t.Context()
	s := newStack(ctx, t)
	const instance = "vitals-e2e:9464"
	s.writeCore(t, fmt.Sprintf(`  alerting:
    alertmanagers: ["http://%s"]
    labels: {instance: %q}
    evaluation_interval: 1s
    resend_interval: 2s
`, s.am, instance))
	s.writeAlertmanager(t)
	s.startAlertmanager(t, amBin)
	agent := e2etest.Start(t, s.vitals, "--config", filepath.Join(s.dir, "core.yaml"))
	e2etest.WaitHTTP(ctx, t, "http://"+s.am+"/-/ready", 60*time.Second)
	e2etest.WaitHTTP(ctx, t, "http://"+s.agent+"/readyz", 60*time.Second)
	healthy := func(plugin string) {
		t.Helper()
		err := e2etest.Poll(ctx, 90*time.Second, 100*time.Millisecond, plugin+" healthy", func(ctx context.Context) error {
			v, err := s.agentMetric(ctx, `vitals_ai_plugin_health_state{plugin="`+plugin+`",state="healthy"}`)
			if err == nil && v != "1" {
				err = fmt.Errorf("healthy = %s", v)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	healthy("llm")
	healthy("ollama")
	s.waitAmtool(ctx, t, nil)
	top := t // processes started in a subtest live on: their cleanup is the test's

	t.Run("kill an AI server: the agent's own alert fires and resolves", func(t *testing.T) {
		killed := time.Now()
		s.sims["llm"].proc.Kill()
		n, err := s.hook.wait(ctx, 60*time.Second, killed, "VitalsAIPluginUnhealthy", "llm", "firing")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kill-to-webhook without Prometheus: %.2f s (receiver %s)", n.At.Sub(killed).Seconds(), n.Receiver)
		want := map[string]string{"alertname": "VitalsAIPluginUnhealthy", "severity": "critical", "scope": "ai_plugin",
			"job": "vitals", "instance": instance, "plugin": "llm", "state": "unhealthy"}
		if fmt.Sprint(n.Labels) != fmt.Sprint(want) || n.Receiver != "pager" {
			t.Errorf("receiver %s, labels %v; want pager, %v", n.Receiver, n.Labels, want)
		}
		s.waitAmtool(ctx, t, []string{"VitalsAIPluginUnhealthy/llm"}, "plugin=llm")
		sent, err := s.agentMetric(ctx, `vitals_alertmanager_alerts_sent_total{alertmanager="http://`+s.am+`"}`)
		if err != nil || sent == "0" {
			t.Errorf("vitals_alertmanager_alerts_sent_total = %q, %v", sent, err)
		}

		restored := time.Now()
		s.sims["llm"] = s.startSim(ctx, top, "llamacpp", s.sims["llm"].addr)
		n, err = s.hook.wait(ctx, 60*time.Second, restored, "VitalsAIPluginUnhealthy", "llm", "resolved")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restore-to-resolved without Prometheus: %.2f s", n.At.Sub(restored).Seconds())
		s.waitAmtool(ctx, t, nil, "plugin=llm")
	})

	t.Run("make one stuck: one page, stuck", func(t *testing.T) {
		stuck := time.Now()
		s.setKnobs(ctx, t, "ollama", `{"stuck": true}`)
		if _, err := s.hook.wait(ctx, 60*time.Second, stuck, "VitalsAIPluginStuck", "ollama", "firing"); err != nil {
			t.Fatal(err)
		}
		// The engine says stuck, not unhealthy: amtool lists stuck alone.
		err := e2etest.Poll(ctx, 60*time.Second, 100*time.Millisecond, "ollama stuck", func(ctx context.Context) error {
			v, err := s.agentMetric(ctx, `vitals_ai_plugin_health_state{plugin="ollama",state="stuck"}`)
			if err == nil && v != "1" {
				err = fmt.Errorf("stuck = %s", v)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		s.waitAmtool(ctx, t, []string{"VitalsAIPluginStuck/ollama"}, "plugin=ollama")
		unstuck := time.Now()
		s.setKnobs(ctx, t, "ollama", `{"stuck": false}`)
		if _, err := s.hook.wait(ctx, 60*time.Second, unstuck, "VitalsAIPluginStuck", "ollama", "resolved"); err != nil {
			t.Fatal(err)
		}
		healthy("ollama")
		s.waitAmtool(ctx, t, nil, "plugin=ollama")
		if got := s.hook.count("VitalsAIPluginUnhealthy", "ollama", stuck); got != 0 {
			t.Errorf("the stuck plugin also paged VitalsAIPluginUnhealthy (%d notifications)", got)
		}
	})

	t.Run("kill the agent: its firing alert resolves at its endsAt", func(t *testing.T) {
		killed := time.Now()
		s.sims["llm"].proc.Kill()
		if _, err := s.hook.wait(ctx, 60*time.Second, killed, "VitalsAIPluginUnhealthy", "llm", "firing"); err != nil {
			t.Fatal(err)
		}
		s.waitAmtool(ctx, t, []string{"VitalsAIPluginUnhealthy/llm"}, "plugin=llm")
		died := time.Now()
		agent.Kill()
		// endsAt is 4 resend intervals (8 s) after the last send.
		n, err := s.hook.wait(ctx, 60*time.Second, died, "VitalsAIPluginUnhealthy", "llm", "resolved")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("agent-killed-to-resolved: %.2f s (endsAt: 4 x resend_interval 2 s after the last send)", n.At.Sub(died).Seconds())
		s.waitAmtool(ctx, t, nil, "plugin=llm")
	})
}
