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
	c := agent.NewContainer(nil)
	if err := c.For("storage").Provide("store", &store{name: "s"}); err != nil {
		t.Fatal(err)
	}
	got, err := agent.Require[*store](ctx, c.For("reader"), "store")
	if err != nil || got.name != "s" {
		t.Fatalf("Require = %v, %v", got, err)
	}
	_, err = agent.Require[string](ctx, c.For("reader"), "store")
	if err == nil || err.Error() != `plugin "reader" requires service "store" as string: it is *agent_test.store` {
		t.Errorf("wrong type err = %v", err)
	}
	_, err = agent.Require[*store](ctx, c.For("reader"), "missing")
	if !errors.Is(err, agent.ErrServiceNotFound) || !strings.Contains(err.Error(), `plugin "reader" requires service "missing"`) {
		t.Errorf("missing err = %v", err)
	}
	if err := c.For("other").Provide("store", &store{}); err == nil || !strings.Contains(err.Error(), `already provided by plugin "storage"`) {
		t.Errorf("duplicate provide err = %v", err)
	}
	if err := c.For("storage").Provide("store", &store{name: "again"}); err != nil {
		t.Errorf("owner re-providing its service: %v", err)
	}
	if err := c.Provide("Bad-Name", 1); err == nil {
		t.Error("invalid service name accepted")
	}
	if err := c.Provide("nil_value", nil); err == nil {
		t.Error("nil service accepted")
	}
}

func TestContainerLazyFactories(t *testing.T) {
	ctx := context.Background()
	c := agent.NewContainer(nil)
	builds := 0
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.ProvideFactory("db", nil, func(context.Context, *agent.Container) (any, error) {
		builds++
		return &store{name: "db"}, nil
	}))
	must(c.ProvideFactory("cache", []string{"db"}, func(ctx context.Context, c *agent.Container) (any, error) {
		db, err := agent.Require[*store](ctx, c, "db")
		if err != nil {
			return nil, err
		}
		return &store{name: "cache over " + db.name}, nil
	}))
	got, err := agent.Require[*store](ctx, c.For("app"), "cache")
	if err != nil || got.name != "cache over db" {
		t.Fatalf("cache = %v, %v", got, err)
	}
	if _, err := agent.Require[*store](ctx, c, "db"); err != nil || builds != 1 {
		t.Errorf("db built %d times, err %v; want once", builds, err)
	}

	f := func(context.Context, *agent.Container) (any, error) { return 1, nil }
	must(c.ProvideFactory("a", []string{"b"}, f))
	must(c.ProvideFactory("b", []string{"c"}, f))
	must(c.ProvideFactory("c", []string{"a"}, f))
	_, err = c.For("app").Get(ctx, "a")
	if !errors.Is(err, agent.ErrServiceCycle) || !strings.Contains(err.Error(), "a → b → c → a") {
		t.Errorf("cycle err = %v", err)
	}
	must(c.ProvideFactory("broken", nil, func(context.Context, *agent.Container) (any, error) {
		return nil, errors.New("no disk")
	}))
	if _, err := c.For("app").Get(ctx, "broken"); err == nil || !strings.Contains(err.Error(), `plugin "app" requires service "broken": build: no disk`) {
		t.Errorf("factory err = %v", err)
	}
	must(c.ProvideFactory("needs_ghost", []string{"ghost"}, f))
	if _, err := c.Get(ctx, "needs_ghost"); err == nil || !strings.Contains(err.Error(), `dependency "ghost": service not registered`) {
		t.Errorf("missing dep err = %v", err)
	}
}

func TestContainerHealth(t *testing.T) {
	c := agent.NewContainer(nil)
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
