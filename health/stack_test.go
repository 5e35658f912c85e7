package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/internal/h1"
	"github.com/vitals-dev/vitals/probes"
)

const stackChildEnv = "VITALS_HEALTH_STACK_CHILD"

// checkStack is the stack a check of a warm engine fits in: a worker
// that runs checks one after another keeps a stack of this size, not
// twice it. Every scheduler worker holds one (32 of them at 1000 targets).
const checkStack = 16 << 10

// TestCheckFitsSmallStack: a check of the shipped HTTP probes, past the
// first ones (which fill encoding/json's and the SDK's caches), never
// grows its worker's stack past checkStack: liveness over a new
// connection each time (the dial is the deepest call of a liveness
// probe), readiness, and the default probe set. The checks run in a
// child process with the stack limit set: a check that needs more is a
// fatal stack overflow there, whose trace this test prints.
func TestCheckFitsSmallStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's frames are larger than the shipped build's")
	}
	if os.Getenv(stackChildEnv) != "" {
		checkStackChild(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCheckFitsSmallStack$", "-test.count=1")
	cmd.Env = append(os.Environ(), stackChildEnv+"=1", "GOTRACEBACK=system")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if i := strings.Index(string(out), "goroutine stack exceeds"); i >= 0 {
			out = out[i:min(len(out), i+8000)]
		}
		t.Fatalf("the checks did not run within %d bytes of stack: %v\n%s", checkStack, err, out)
	}
}

func checkStackChild(t *testing.T) {
	tp, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "vitals"})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	liveness := func(c *health.Config) { c.Readiness, c.Resources, c.Synthetic = false, false, false }
	for _, v := range []struct {
		name      string
		keepAlive bool
		set       func(*health.Config)
	}{
		{"liveness, a new connection each", false, liveness},
		{"readiness", true, func(c *health.Config) { liveness(c); c.Readiness = true }},
		{"default probes", true, func(*health.Config) {}},
	} {
		s, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(s)
		srv.Config.SetKeepAlivesEnabled(v.keepAlive)
		srv.Start()

		cfg := health.DefaultConfig()
		cfg.Interval, cfg.UnhealthyInterval = agent.Duration(time.Hour), agent.Duration(time.Hour)
		v.set(&cfg)
		verdicts := make(chan struct{}, 1)
		e := health.New(health.Options{Config: cfg, TracerProvider: tp.TracerProvider(),
			Client: &http.Client{Transport: &h1.Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4, BufferSize: 1 << 10},
				CheckRedirect: probes.SameHostRedirect},
			OnVerdict: func(string, health.Status) {
				select {
				case verdicts <- struct{}{}:
				default:
				}
			}})
		target := health.Target{ID: "p", Mode: health.ModeHTTP, Kind: probes.KindOpenAI, Endpoint: srv.URL}
		e.Upsert(target)
		e.Start()
		// A changed target is checked at once; the interval is an hour.
		checks := func(n int) {
			for i := range n {
				target.Model = strconv.Itoa(i % 2)
				e.Upsert(target)
				<-verdicts
			}
		}
		checks(4)
		// The collector halves an idle goroutine's stack at each cycle:
		// the worker's is back at its smallest.
		for range 4 {
			runtime.GC()
		}
		old := debug.SetMaxStack(checkStack)
		checks(20)
		debug.SetMaxStack(old)
		if err := e.Stop(context.Background()); err != nil {
			t.Error(v.name, err)
		}
		srv.Close()
		s.Close()
	}
}
