package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
)

type store struct{ name string }

type sick struct{}

func (sick) HealthCheck(context.Context) agent.Health {
	return agent.Health{Status: agent.HealthDegraded, Message: "disk 95% full"}
}

func TestContainerRequire(t *testing.T) {
	ctx := context.Background()
	c := agent.NewContainer()
	host := func(name string) agent.Host { return agent.NewHost(name, agent.HostOptions{Container: c}) }
	if err := host("storage").Provide("store", &store{name: "s"}); err != nil {
		t.Fatal(err)
	}
	got, err := agent.Require[*store](ctx, host("reader"), "store")
	if err != nil || got.name != "s" {
		t.Fatalf("Require = %v, %v", got, err)
	}
	_, err = agent.Require[string](ctx, host("reader"), "store")
	if err == nil || err.Error() != `plugin "reader" requires service "store" as string: it is *agent_test.store` {
		t.Errorf("wrong type err = %v", err)
	}
	_, err = agent.Require[*store](ctx, host("reader"), "missing")
	if !errors.Is(err, agent.ErrServiceNotFound) || !strings.Contains(err.Error(), `plugin "reader" requires service "missing"`) {
		t.Errorf("missing err = %v", err)
	}
	if _, err := agent.Require[*store](ctx, c, "store"); err != nil {
		t.Errorf("the host's own lookup: %v", err)
	}
	if err := host("other").Provide("store", &store{}); err == nil || !strings.Contains(err.Error(), `already provided by plugin "storage"`) {
		t.Errorf("duplicate provide err = %v", err)
	}
	if err := host("storage").Provide("store", &store{name: "again"}); err != nil {
		t.Errorf("owner re-providing its service: %v", err)
	}
	if err := c.Provide("Bad-Name", 1); err == nil {
		t.Error("invalid service name accepted")
	}
	if err := c.Provide("nil_value", nil); err == nil {
		t.Error("nil service accepted")
	}
}

func TestContainerHealth(t *testing.T) {
	c := agent.NewContainer()
	if err := c.Provide("ok_service", &store{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Provide("sick_service", sick{}); err != nil {
		t.Fatal(err)
	}
	rep := c.Health(context.Background(), time.Second)
	if rep.Status != agent.HealthDegraded {
		t.Errorf("status = %s, want degraded", rep.Status)
	}
	if len(rep.Services) != 2 || rep.Services[1].Name != "sick_service" || rep.Services[1].Health.Message != "disk 95% full" {
		t.Errorf("services = %+v", rep.Services)
	}
}
