package agent

import (
	"fmt"
	"net/http"
	"strings"
)

// Guard names the plugin whose HTTP middleware authenticates the HTTP
// front, and the paths that stay open (GET and HEAD) while it does not run.
// The zero Guard guards nothing.
type Guard struct {
	// Plugin is the guarding plugin's name; "" means the front is not
	// guarded (the config does not enable an authenticating plugin).
	Plugin string
	// OpenPaths are served while the guard is down: exact paths, or
	// prefixes ending in "/".
	OpenPaths []string
}

// GuardFunc tells, from a config, which plugin guards the HTTP front. The
// agent asks it before any plugin runs and again on every reload, so the
// front is closed from its first byte whenever the config asks for
// authentication.
type GuardFunc func(*Config) Guard

// gateClosed reports why a request must be refused while the guard is
// down, or "" when it may pass: the front is unguarded, the guard's
// middleware is in the chain that serves it, or it is a read of an open
// path.
func (s *Server) gateClosed(r *http.Request, rt *routes) string {
	g := s.guard.Load()
	if g == nil || g.Plugin == "" || rt.guardedBy(g.Plugin) {
		return ""
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && openPath(g.OpenPaths, r.URL.Path) {
		return ""
	}
	return s.guardDown(g.Plugin)
}

// guardDown says why the guard plugin's middleware is not in front.
func (s *Server) guardDown(name string) string {
	st, reason, ok := s.o.Manager.State(name)
	switch {
	case !ok:
		return fmt.Sprintf("authentication is not available: plugin %q is not registered", name)
	case st == StateFailed && reason != "":
		return fmt.Sprintf("authentication is not available: the %s plugin failed: %s", name, reason)
	case st == StateRunning:
		// Running, and the chain is being rebuilt around it.
		return fmt.Sprintf("authentication is not available yet: the %s plugin is being installed", name)
	case st == StateRegistered || st == StateInitializing || st == StateInitialized || st == StateStarting:
		return fmt.Sprintf("authentication is not available yet: the %s plugin is %s", name, st)
	default:
		return fmt.Sprintf("authentication is not available: the %s plugin is %s", name, st)
	}
}

// authReady is the readiness check of the guard: not ready while the
// config asks for authentication and the guard is not in front.
func (s *Server) authReady() error {
	g := s.guard.Load()
	if g == nil || g.Plugin == "" || s.routes.Load().guardedBy(g.Plugin) {
		return nil
	}
	return fmt.Errorf("%s", s.guardDown(g.Plugin))
}

func openPath(open []string, path string) bool {
	for _, o := range open {
		if MatchPath(o, path) {
			return true
		}
	}
	return false
}

// MatchPath reports whether a request path matches a configured path
// pattern: the same path; a prefix ending in "/" ("/debug/"); or, segment
// by segment, a pattern whose "*" segments each stand for one segment of
// the path ("/api/v1/ai-plugins/*/ready"). A "*" never matches an empty,
// "." or ".." segment, so no path that would resolve elsewhere matches it.
// The security plugin's open_paths, the rate limiter's exempt_paths and
// the front's gate match with it.
func MatchPath(pattern, path string) bool {
	if path == pattern {
		return true
	}
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(path, pattern)
	}
	if !strings.Contains(pattern, "*") {
		return false
	}
	for {
		ps, prest, pmore := strings.Cut(pattern, "/")
		s, rest, more := strings.Cut(path, "/")
		if pmore != more {
			return false
		}
		if ps == "*" {
			if s == "" || s == "." || s == ".." {
				return false
			}
		} else if ps != s {
			return false
		}
		if !more {
			return true
		}
		pattern, path = prest, rest
	}
}
