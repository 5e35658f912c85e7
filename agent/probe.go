package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/heptiolabs/healthcheck"
)

// probeCheck is one named verdict of /livez or /readyz.
type probeCheck struct {
	name    string
	err     error
	ignored bool // reported, but not counted (an optional plugin under readiness: required)
}

// liveness returns the checks of /livez: the process is not wedged.
func (s *Server) liveness() []probeCheck {
	return []probeCheck{{name: "goroutines", err: s.goroutines()}}
}

// readiness returns the checks of /readyz: liveness, the gate, and the
// lifecycle of every enabled plugin.
func (s *Server) readiness() []probeCheck {
	out := s.liveness()
	out = append(out, probeCheck{name: "auth", err: s.authReady()})
	for _, c := range s.o.Manager.Readiness() {
		out = append(out, probeCheck{name: c.Name, err: c.Err, ignored: c.Ignored})
	}
	return out
}

// probeEndpoint serves /livez or /readyz for GET and HEAD: 200 when every
// counted check passes, else 503. The body is a JSON object of the failing
// checks ({} when none fail); ?full=1 lists every check, "OK" or its
// reason; ?verbose lists every check as text, one per line, as
// Kubernetes' own probes do:
//
//	[+]goroutines ok
//	[-]plugin:security failed: security: audit: file is not a database
//	readyz check failed
func probeEndpoint(name string, checks func() []probeCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		results := checks()
		code := http.StatusOK
		for _, c := range results {
			if c.err != nil && !c.ignored {
				code = http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		q := r.URL.Query()
		if q.Has("verbose") {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			var b strings.Builder
			for _, c := range results {
				switch {
				case c.err == nil:
					fmt.Fprintf(&b, "[+]%s ok\n", c.name)
				case c.ignored:
					fmt.Fprintf(&b, "[+]%s %s (optional; not counted under readiness: required)\n", c.name, oneLine(c.err.Error()))
				default:
					fmt.Fprintf(&b, "[-]%s %s\n", c.name, oneLine(c.err.Error()))
				}
			}
			if code == http.StatusOK {
				fmt.Fprintf(&b, "%s check passed\n", name)
			} else {
				fmt.Fprintf(&b, "%s check failed\n", name)
			}
			w.WriteHeader(code)
			_, _ = w.Write([]byte(b.String()))
			return
		}
		full := q.Get("full") == "1"
		body := map[string]string{}
		for _, c := range results {
			switch {
			case c.err == nil && full:
				body[c.name] = "OK"
			case c.err != nil && (full || !c.ignored):
				body[c.name] = oneLine(c.err.Error())
			}
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "    ")
		_ = enc.Encode(body)
	}
}

// oneLine keeps a reason on one line of the verbose listing.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// goroutineLimit is the liveness bound on goroutines: past it the process
// is taken as leaking.
const goroutineLimit = 100_000

var goroutineCheck = healthcheck.GoroutineCountCheck(goroutineLimit)

func (s *Server) goroutines() error { return goroutineCheck() }
