package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// amAlert is an alert as Alertmanager's v2 API takes and returns it.
type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt,omitzero"`
	EndsAt   time.Time         `json:"endsAt,omitzero"`
	Status   struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status,omitzero"`
}

// TestInhibition runs Debian's Alertmanager on alertmanager.yml, posts the
// alerts of one failure at a time, and checks which of them Alertmanager
// keeps active and which it inhibits: one failure, one page.
func TestInhibition(t *testing.T) {
	bin := e2etest.Tool(t, "prometheus-alertmanager")
	ctx := t.Context()
	dir := t.TempDir()
	cfg, err := os.ReadFile("alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := e2etest.Addr(t)
	e2etest.Start(t, bin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=")
	base := "http://" + addr
	e2etest.WaitHTTP(ctx, t, base+"/-/ready", 60*time.Second)

	ai := func(name, severity, plugin string) map[string]string {
		return map[string]string{"alertname": name, "severity": severity, "scope": "ai_plugin",
			"job": "vitals", "instance": "agent:9464", "plugin": plugin}
	}
	for _, tc := range []struct {
		name       string
		post       []map[string]string
		active     []string // alertname/plugin
		suppressed []string
	}{
		{
			name: "a stuck plugin pages stuck, not unhealthy too",
			post: []map[string]string{
				ai("VitalsAIPluginStuck", "critical", "s1"),
				ai("VitalsAIPluginUnhealthy", "critical", "s1"),
				ai("VitalsAIPluginHighErrorRate", "warning", "s1"),
			},
			active:     []string{"VitalsAIPluginStuck/s1"},
			suppressed: []string{"VitalsAIPluginUnhealthy/s1", "VitalsAIPluginHighErrorRate/s1"},
		},
		{
			name: "a stuck plugin does not inhibit another plugin",
			post: []map[string]string{
				ai("VitalsAIPluginStuck", "critical", "s2"),
				ai("VitalsAIPluginUnhealthy", "critical", "other2"),
			},
			active: []string{"VitalsAIPluginStuck/s2", "VitalsAIPluginUnhealthy/other2"},
		},
		{
			name: "an agent that is down pages, not its plugins",
			post: []map[string]string{
				{"alertname": "VitalsAgentDown", "severity": "critical", "scope": "agent", "job": "vitals", "instance": "down:9464"},
				{"alertname": "VitalsAIPluginUnhealthy", "severity": "critical", "scope": "ai_plugin", "job": "vitals", "instance": "down:9464", "plugin": "d4"},
				{"alertname": "VitalsAIPluginUnhealthy", "severity": "critical", "scope": "ai_plugin", "job": "vitals", "instance": "up:9464", "plugin": "e4"},
			},
			active:     []string{"VitalsAgentDown/", "VitalsAIPluginUnhealthy/e4"},
			suppressed: []string{"VitalsAIPluginUnhealthy/d4"},
		},
		{
			name: "an unhealthy plugin pages once",
			post: []map[string]string{
				ai("VitalsAIPluginUnhealthy", "critical", "u3"),
				ai("VitalsAIPluginDegraded", "warning", "u3"),
				ai("VitalsAIPluginFlapping", "warning", "u3"),
			},
			active:     []string{"VitalsAIPluginUnhealthy/u3"},
			suppressed: []string{"VitalsAIPluginDegraded/u3", "VitalsAIPluginFlapping/u3"},
		},
		{
			name: "a stuck plugin that was overloaded and a failed load page once",
			post: []map[string]string{
				ai("VitalsAIPluginStuck", "critical", "o5"),
				ai("VitalsAIPluginOverloaded", "warning", "o5"),
				ai("VitalsAIPluginUnhealthy", "critical", "l5"),
				ai("VitalsAIPluginLoadingTooLong", "warning", "l5"),
				ai("VitalsAIPluginOverloaded", "warning", "busy5"),
			},
			active:     []string{"VitalsAIPluginStuck/o5", "VitalsAIPluginUnhealthy/l5", "VitalsAIPluginOverloaded/busy5"},
			suppressed: []string{"VitalsAIPluginOverloaded/o5", "VitalsAIPluginLoadingTooLong/l5"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var batch []amAlert
			for _, l := range tc.post {
				batch = append(batch, amAlert{Labels: l, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)})
			}
			postAlerts(ctx, t, base, batch)
			want := map[string]string{}
			for _, k := range tc.active {
				want[k] = "active"
			}
			for _, k := range tc.suppressed {
				want[k] = "suppressed"
			}
			var last error
			err := e2etest.Poll(ctx, 30*time.Second, 100*time.Millisecond, "alert states", func(ctx context.Context) error {
				got, err := getAlerts(ctx, base)
				if err != nil {
					return err
				}
				var diff []string
				for k, w := range want {
					if g := got[k]; g != w {
						diff = append(diff, fmt.Sprintf("%s is %q, want %q", k, g, w))
					}
				}
				slices.Sort(diff)
				if len(diff) > 0 {
					last = fmt.Errorf("%s", strings.Join(diff, "; "))
					return last
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%v (last seen: %v)", err, last)
			}
		})
	}
}

func postAlerts(ctx context.Context, t *testing.T, base string, alerts []amAlert) {
	t.Helper()
	b, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/alerts", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}
}

// getAlerts returns the state (active, suppressed, unprocessed) of every
// alert Alertmanager holds, by "alertname/plugin".
func getAlerts(ctx context.Context, base string) (map[string]string, error) {
	b, err := e2etest.Get(ctx, base+"/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	var as []amAlert
	if err := json.Unmarshal(b, &as); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range as {
		out[a.Labels["alertname"]+"/"+a.Labels["plugin"]] = a.Status.State
	}
	return out, nil
}
