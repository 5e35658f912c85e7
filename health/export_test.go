package health

import "time"

// ForceState sets a plugin's state without a check, for tests of what
// reads states (roll-up, dependencies).
func (e *Engine) ForceState(id string, s State) {
	e.mu.RLock()
	p, ok := e.plugins[id]
	e.mu.RUnlock()
	if !ok {
		return
	}
	p.smu.Lock()
	p.status.State = s
	p.smu.Unlock()
}

// OnPersisted sets fn to be called, from the writer, for each record once
// the transaction holding it committed. Set it before Start.
func (h *History) OnPersisted(fn func(any)) { h.onPersisted = fn }

// Queued returns how many records wait for the store, so an OnPersisted
// hook can tell whether more are coming.
func (h *History) Queued() int { return len(h.queue) }

// IsQueued reports whether id waits in the scheduler's queue: its last
// run, if any, has ended and been accounted for.
func (s *Scheduler) IsQueued(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[id]
	return ok && !it.running && it.index >= 0
}

// Scheduled returns how many items the engine's scheduler holds.
func (e *Engine) Scheduled() int { return e.sched.Len() }

// WakePending reports whether a wake waits for the scheduler's loop.
func (s *Scheduler) WakePending() bool { return len(s.wake) > 0 }

// HoldPlugin locks id's plugin, as a config change does to set its
// thresholds, until the returned func is called.
func (e *Engine) HoldPlugin(id string) (release func()) {
	e.mu.RLock()
	p := e.plugins[id]
	e.mu.RUnlock()
	p.mu.Lock()
	return p.mu.Unlock
}

// ConfigJitter returns the jitter of the config the engine holds.
func (e *Engine) ConfigJitter() float64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.cfg.Jitter
}

// Nominal returns id's nominal time: its next run before jitter.
func (s *Scheduler) Nominal(id string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[id].nominal
}
