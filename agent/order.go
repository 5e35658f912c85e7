package agent

import (
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// plan returns the start order of plugins: a topological order of their
// dependencies in which ties go to the lower priority, then the name. A
// dependency names a plugin, a service another plugin provides, or a service
// the host provides (always there). provided maps service names to the
// plugins that provide them. A dependency on nothing known, or a
// cycle, is an error that names the plugins.
// It also returns, for each plugin, the plugins it needs.
func plan(plugins []Metadata, provided map[string]string, host []string) ([]string, map[string][]string, error) {
	byName := make(map[string]Metadata, len(plugins))
	for _, m := range plugins {
		byName[m.Name] = m
	}
	provider := provided
	isHost := map[string]bool{}
	for _, s := range host {
		isHost[s] = true
	}

	deps := map[string][]string{}       // plugin -> plugins it needs
	dependents := map[string][]string{} // plugin -> plugins that need it
	var missing []string
	for _, m := range plugins {
		seen := map[string]bool{}
		for _, d := range m.Dependencies {
			target := d
			if _, ok := byName[d]; !ok {
				if p, ok := provider[d]; ok {
					target = p
				} else if isHost[d] {
					continue
				} else {
					missing = append(missing, fmt.Sprintf("%s needs %q", m.Name, d))
					continue
				}
			}
			if target == m.Name || seen[target] {
				continue
			}
			seen[target] = true
			deps[m.Name] = append(deps[m.Name], target)
			dependents[target] = append(dependents[target], m.Name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, nil, fmt.Errorf("missing dependencies: %s (not an enabled plugin or a provided service)", strings.Join(missing, "; "))
	}

	indeg := map[string]int{}
	q := &readyQueue{}
	for _, m := range plugins {
		indeg[m.Name] = len(deps[m.Name])
		if indeg[m.Name] == 0 {
			heap.Push(q, m)
		}
	}
	order := make([]string, 0, len(plugins))
	for q.Len() > 0 {
		m := heap.Pop(q).(Metadata)
		order = append(order, m.Name)
		for _, d := range dependents[m.Name] {
			indeg[d]--
			if indeg[d] == 0 {
				heap.Push(q, byName[d])
			}
		}
	}
	if len(order) < len(plugins) {
		return nil, nil, fmt.Errorf("dependency cycle: %s", findCycle(deps, indeg))
	}
	return order, deps, nil
}

// findCycle walks dependencies among the plugins left over by the
// topological sort and returns one cycle as "a → b → a".
func findCycle(deps map[string][]string, indeg map[string]int) string {
	var left []string
	for n, d := range indeg {
		if d > 0 {
			left = append(left, n)
		}
	}
	sort.Strings(left)
	state := map[string]int{} // 0 new, 1 on stack, 2 done
	var stack []string
	var cycle []string
	var visit func(n string) bool
	visit = func(n string) bool {
		state[n] = 1
		stack = append(stack, n)
		next := append([]string(nil), deps[n]...)
		sort.Strings(next)
		for _, d := range next {
			if state[d] == 1 {
				for i, s := range stack {
					if s == d {
						cycle = append(append([]string(nil), stack[i:]...), d)
						return true
					}
				}
			}
			if state[d] == 0 && visit(d) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		return false
	}
	for _, n := range left {
		if state[n] == 0 && visit(n) {
			break
		}
	}
	// Read as "a needs b needs a".
	return strings.Join(cycle, " → ")
}

type readyQueue []Metadata

func (q readyQueue) Len() int { return len(q) }
func (q readyQueue) Less(i, j int) bool {
	if q[i].Priority != q[j].Priority {
		return q[i].Priority < q[j].Priority
	}
	return q[i].Name < q[j].Name
}
func (q readyQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *readyQueue) Push(x any)   { *q = append(*q, x.(Metadata)) }
func (q *readyQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// planPlugins orders built plugins by their metadata and the services they
// provide (see plan); host names the services the host provides.
func planPlugins(plugins map[string]Plugin, host []string) ([]string, map[string][]string, error) {
	names := slices.Sorted(maps.Keys(plugins))
	metas := make([]Metadata, 0, len(names))
	provided := map[string]string{}
	for _, name := range names {
		p := plugins[name]
		metas = append(metas, p.Metadata())
		if sp, ok := p.(ServiceProvider); ok {
			for _, s := range sp.Services() {
				provided[s] = name
			}
		}
	}
	return plan(metas, provided, host)
}

// checkPeers asks every PeerChecker among plugins about the others, in
// name order, and joins what they say.
func checkPeers(plugins map[string]Plugin) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(plugins)) {
		if pc, ok := plugins[name].(PeerChecker); ok {
			if err := pc.CheckPeers(plugins); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// hostServices are the services the host provides, which plugins may
// always depend on.
var hostServices = []string{ServicePlugins}
