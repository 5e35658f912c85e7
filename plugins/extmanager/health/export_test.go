package health

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
