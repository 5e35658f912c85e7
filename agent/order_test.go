package agent_test

import (
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/agent"
)

func TestOrder(t *testing.T) {
	md := func(name string, p agent.Priority, deps ...string) agent.Metadata {
		return agent.Metadata{Name: name, Priority: p, Dependencies: deps}
	}
	tests := []struct {
		name     string
		plugins  []agent.Metadata
		provided map[string]string
		want     string // order joined by space, or the error's text
		wantErr  bool
	}{
		{
			name: "priority then name",
			plugins: []agent.Metadata{
				md("zeta", agent.PriorityBusiness), md("alpha", agent.PriorityBusiness),
				md("bus", agent.PriorityInfrastructure), md("auth", agent.PrioritySecurity),
				md("limits", agent.PriorityMiddleware),
			},
			want: "bus auth limits alpha zeta",
		},
		{
			name: "security plugin depends on a business plugin",
			plugins: []agent.Metadata{
				md("auth", agent.PrioritySecurity, "catalog"), md("catalog", agent.PriorityBusiness),
				md("bus", agent.PriorityInfrastructure), md("limits", agent.PriorityMiddleware),
			},
			want: "bus limits catalog auth",
		},
		{
			name: "dependency through a provided service",
			plugins: []agent.Metadata{
				md("consumer", agent.PriorityInfrastructure, "message_bus"), md("broker", agent.PriorityBusiness),
			},
			provided: map[string]string{"message_bus": "broker"},
			want:     "broker consumer",
		},
		{
			name:    "host services are always there",
			plugins: []agent.Metadata{md("a", agent.PriorityBusiness, agent.ServicePlugins)},
			want:    "a",
		},
		{
			name: "chain against priorities",
			plugins: []agent.Metadata{
				md("c", agent.PriorityInfrastructure, "b"), md("b", agent.PrioritySecurity, "a"),
				md("a", agent.PriorityBusiness), md("x", agent.PriorityInfrastructure),
			},
			want: "x a b c",
		},
		{
			name:    "missing dependency names both",
			plugins: []agent.Metadata{md("a", agent.PriorityBusiness, "ghost"), md("b", agent.PriorityBusiness)},
			want:    `missing dependencies: a needs "ghost"`,
			wantErr: true,
		},
		{
			name: "cycle is named",
			plugins: []agent.Metadata{
				md("a", agent.PriorityBusiness, "b"), md("b", agent.PriorityBusiness, "c"),
				md("c", agent.PriorityBusiness, "a"), md("d", agent.PriorityInfrastructure),
			},
			want:    "dependency cycle: a → b → c → a",
			wantErr: true,
		},
		{
			name:    "self dependency is ignored",
			plugins: []agent.Metadata{md("a", agent.PriorityBusiness, "a")},
			want:    "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := agent.Order(tt.plugins, tt.provided, []string{agent.ServicePlugins})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("order = %q, want %q", s, tt.want)
			}
		})
	}
}
