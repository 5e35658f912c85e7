package agenttest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/vitals-dev/vitals/agent"
)

// Fault is what a fake plugin does in one step instead of succeeding.
type Fault int

// Faults a step can have.
const (
	OK    Fault = iota
	Error       // return an error
	Panic       // panic
	Hang        // block until ctx is done or the plugin is released
	// Stuck blocks until the plugin is released, ignoring ctx: a step the
	// host gives up on that keeps running.
	Stuck
)

// Journal records the steps fake plugins ran, in order, as "step:name".
type Journal struct {
	mu      sync.Mutex
	entries []string
}

// Add appends an entry.
func (j *Journal) Add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, s)
}

// Entries returns a copy of the entries.
func (j *Journal) Entries() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

// Steps returns the names of the plugins that ran step, in order.
func (j *Journal) Steps(step string) []string {
	var out []string
	for _, e := range j.Entries() {
		if len(e) > len(step) && e[:len(step)+1] == step+":" {
			out = append(out, e[len(step)+1:])
		}
	}
	return out
}

// Plugin is a fake plugin whose steps can be made to fail. It embeds
// agent.Base and records every call in its Journal.
type Plugin struct {
	agent.Base
	Journal *Journal
	// Faults per step: "initialize", "start", "stop", "reload", and
	// "ready" (Panic or Stuck).
	Faults map[string]Fault
	// Provides lists services it registers in Initialize (value: itself).
	Provides []string
	// Requires lists services it looks up in Initialize.
	Requires []string
	// Handler, when set, is served at Route.
	Route   string
	Handler http.Handler

	// NotReady, when set, is what Ready reports.
	NotReady error

	// Workers is how many goroutines Start runs with the Host's Go. A
	// worker journals "worker:<name>" when it ends; with the fault
	// "worker" set to Stuck it ignores its ctx until Release.
	Workers int

	release chan struct{}
	once    sync.Once

	// inStep counts the lifecycle steps running now; overlaps counts the
	// steps that began while another one ran, which the contract forbids.
	inStep   atomic.Int32
	overlaps atomic.Int32
	// readyCalls counts the calls of Ready begun.
	readyCalls atomic.Int64

	mu       sync.Mutex
	host     agent.Host
	started  bool
	reloads  int
	sections []agent.Section
}

// New returns a fake plugin that journals into j.
func New(j *Journal, m agent.Metadata) *Plugin {
	if m.Version == "" {
		m.Version = "1.0.0"
	}
	return &Plugin{Base: agent.NewBase(m), Journal: j, Faults: map[string]Fault{}, release: make(chan struct{})}
}

// Release ends every Hang of this plugin.
func (p *Plugin) Release() { p.once.Do(func() { close(p.release) }) }

// Started reports whether Start succeeded and Stop has not run since.
func (p *Plugin) Started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Overlaps returns how many lifecycle steps began while another step of
// this plugin was still running. The host's contract makes it 0.
func (p *Plugin) Overlaps() int { return int(p.overlaps.Load()) }

// Reloads returns how many times Reload succeeded.
func (p *Plugin) Reloads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloads
}

// enter counts a step in; the returned func counts it out.
func (p *Plugin) enter(step string) func() {
	if p.inStep.Add(1) > 1 {
		p.overlaps.Add(1)
		if p.Journal != nil {
			p.Journal.Add("overlap:" + step + ":" + p.Name())
		}
	}
	return func() { p.inStep.Add(-1) }
}

func (p *Plugin) act(ctx context.Context, step string) error {
	if p.Journal != nil {
		p.Journal.Add(step + ":" + p.Name())
	}
	switch p.Faults[step] {
	case Error:
		return fmt.Errorf("%s %s: injected failure", p.Name(), step)
	case Panic:
		panic(fmt.Sprintf("%s %s: injected panic", p.Name(), step))
	case Hang:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.release:
			return errors.New("released")
		}
	case Stuck:
		<-p.release
		return errors.New("released")
	}
	return nil
}

// Initialize provides and requires the configured services.
func (p *Plugin) Initialize(ctx context.Context, h agent.Host) error {
	defer p.enter("initialize")()
	p.mu.Lock()
	p.host = h
	p.mu.Unlock()
	if err := p.act(ctx, "initialize"); err != nil {
		return err
	}
	for _, s := range p.Requires {
		if _, err := h.Get(ctx, s); err != nil {
			return err
		}
	}
	for _, s := range p.Provides {
		if err := h.Provide(s, p); err != nil {
			return err
		}
	}
	return nil
}

// Start records the call and starts the Workers.
func (p *Plugin) Start(ctx context.Context) error {
	defer p.enter("start")()
	if err := p.act(ctx, "start"); err != nil {
		return err
	}
	p.mu.Lock()
	p.started = true
	h := p.host
	p.mu.Unlock()
	for range p.Workers {
		h.Go(p.work)
	}
	return nil
}

// work is one of the Workers.
func (p *Plugin) work(ctx context.Context) {
	if p.Faults["worker"] == Stuck {
		<-p.release
	} else {
		<-ctx.Done()
	}
	if p.Journal != nil {
		p.Journal.Add("worker:" + p.Name())
	}
}

// Stop records the call; it is safe twice and without Start.
func (p *Plugin) Stop(ctx context.Context) error {
	defer p.enter("stop")()
	p.mu.Lock()
	p.started = false
	p.mu.Unlock()
	return p.act(ctx, "stop")
}

// Reload records the call and the section.
func (p *Plugin) Reload(ctx context.Context, s agent.Section) error {
	defer p.enter("reload")()
	if err := p.act(ctx, "reload"); err != nil {
		return err
	}
	p.mu.Lock()
	p.reloads++
	p.sections = append(p.sections, s)
	p.mu.Unlock()
	return nil
}

// Ready reports NotReady, or does its "ready" fault: Panic, or Stuck
// until the plugin is released (other faults do nothing here).
func (p *Plugin) Ready() error {
	p.readyCalls.Add(1)
	switch p.Faults["ready"] {
	case Panic:
		panic(p.Name() + " ready: injected panic")
	case Stuck:
		<-p.release
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.NotReady
}

// ReadyCalls is how many calls of Ready have begun, a Stuck one among them.
func (p *Plugin) ReadyCalls() int64 { return p.readyCalls.Load() }

// SetNotReady sets what Ready reports.
func (p *Plugin) SetNotReady(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.NotReady = err
}

// Services lists Provides.
func (p *Plugin) Services() []string { return p.Provides }

// Routes serves Handler at Route.
func (p *Plugin) Routes() []agent.Route {
	if p.Handler == nil {
		return nil
	}
	return []agent.Route{{Pattern: p.Route, Handler: p.Handler}}
}

var (
	_ agent.Plugin           = (*Plugin)(nil)
	_ agent.Reloader         = (*Plugin)(nil)
	_ agent.ServiceProvider  = (*Plugin)(nil)
	_ agent.RouteProvider    = (*Plugin)(nil)
	_ agent.ReadinessChecker = (*Plugin)(nil)
)
