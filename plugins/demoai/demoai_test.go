package demoai_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/plugins/demoai"
	"github.com/vitals-dev/vitals/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func build(t *testing.T, kind probes.Kind, section string) *demoai.Plugin {
	t.Helper()
	s, err := agent.NewSection(section)
	if err != nil {
		t.Fatal(err)
	}
	p, err := demoai.Factory("demo_"+string(kind), kind)(s)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*demoai.Plugin)
}

func TestConformance(t *testing.T) {
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin { return build(t, probes.KindOllama, "") }, nil)
}

func TestDetectsItselfAndReportsHealth(t *testing.T) {
	for _, kind := range []probes.Kind{probes.KindLlamaCpp, probes.KindOllama, probes.KindTEI, probes.KindKServe} {
		t.Run(string(kind), func(t *testing.T) {
			p := build(t, kind, "version: 9.9.9\n")
			ctx := context.Background()
			h := agenttest.NewHost(t, p.Name(), agent.HostOptions{})
			if err := p.Initialize(ctx, h); err != nil {
				t.Fatal(err)
			}
			if err := p.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer agenttest.Stop(ctx, h, p)
			p.SetState(agent.StateRunning, "")
			if !strings.HasPrefix(p.Endpoint(), "http://127.0.0.1:") {
				t.Errorf("endpoint = %q", p.Endpoint())
			}
			det, err := p.Capabilities(ctx)
			if err != nil || det.Kind != kind || det.Version != "9.9.9" || len(det.Capabilities) == 0 {
				t.Errorf("detection = %+v, %v", det, err)
			}
			if h := p.HealthCheck(ctx); h.Status != agent.HealthOK {
				t.Errorf("health = %+v", h)
			}
			// Take the simulated server down through its knobs.
			req, _ := http.NewRequest("POST", p.Endpoint()+"/aisim/knobs", strings.NewReader(`{"down": true}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if h := p.HealthCheck(ctx); h.Status != agent.HealthFailing || h.Details["class"] == "" {
				t.Errorf("health when down = %+v", h)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		"listen: nowhere\n": `section.listen: invalid address "nowhere"`,
		"error_rate: 2\n":   "section.error_rate: must be between 0 and 1",
		"latency: -1s\n":    "section.latency: must not be negative",
		"lattency: 1s\n":    `unknown key "lattency"; did you mean "latency"?`,
		"latency: quick\n":  "invalid duration",
	} {
		s, err := agent.NewSection(text)
		if err == nil {
			_, err = demoai.Factory("demo", probes.KindOllama)(s)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}
