package agent

import "path/filepath"

// Resolve returns path p of a key of the section resolved against the
// directory of the config file the section was read from (the working
// directory for the built-in config). An empty path, an absolute one and
// SQLite's ":memory:", which names no file, are returned as they are.
// Every plugin resolves the paths its config names with it.
func (s Section) Resolve(p string) string {
	if p == "" || p == ":memory:" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir(), p)
}

// Dir returns the directory Resolve resolves against: the config file's,
// or "." for the built-in config. A plugin that hands its paths to a
// library resolving them itself (Prometheus' SetDirectory) passes it Dir.
func (s Section) Dir() string { return filepath.Dir(s.file) }
