package engines_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

func TestDetectRetriesTimeout(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		sim, url := newSim(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Hang: true}})
		s := noSleep{then: func(n int) {
			if n == 2 {
				sim.SetHang(false)
			}
		}}
		o := opts(&s)
		// Long enough for a whole Ollama detection on a loaded machine
		// once the server answers again.
		o.StepTimeout = 250 * time.Millisecond
		o.InitialBackoff = 100 * time.Millisecond
		d, err := engines.Registry().Detect(context.Background(), client(t), url, o)
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind != probes.KindOllama || d.Attempts != 3 {
			t.Fatalf("got %+v", d)
		}
		if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(s.got(), want) {
			t.Fatalf("waits %v, want %v", s.got(), want)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		_, url := newSim(t, aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Hang: true}})
		var s noSleep
		o := opts(&s)
		o.StepTimeout = 20 * time.Millisecond
		o.Attempts = 3
		o.InitialBackoff = time.Second
		o.MaxBackoff = 1500 * time.Millisecond
		d, err := engines.Registry().Detect(context.Background(), client(t), url, o)
		if probes.Classify(err) != probes.ClassTimeout {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if d.Kind != probes.KindUnknown || d.Attempts != 3 || !strings.Contains(d.Reason, "3 attempts") {
			t.Fatalf("got %+v", d)
		}
		if want := []time.Duration{time.Second, 1500 * time.Millisecond}; !slices.Equal(s.got(), want) {
			t.Fatalf("waits %v, want %v", s.got(), want)
		}
	})
}

func TestDetectRetriesOtherTransients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	_, downURL := newSim(t, aisim.Config{Kind: probes.KindTGI, Knobs: aisim.Knobs{Down: true}})
	_, failURL := newSim(t, aisim.Config{Kind: probes.KindTEI, Knobs: aisim.Knobs{ErrorRate: 1}})

	tests := []struct {
		name string
		url  string
		want probes.ErrorClass
	}{
		{"refused", refused, probes.ClassRefused},
		{"reset", downURL, probes.ClassReset},
		{"5xx", failURL, probes.ClassHTTP5xx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s noSleep
			o := opts(&s)
			o.Attempts = 2
			d, err := engines.Registry().Detect(context.Background(), client(t), tt.url, o)
			if got := probes.Classify(err); got != tt.want {
				t.Fatalf("err = %v (%s), want %s", err, got, tt.want)
			}
			if d.Kind != probes.KindUnknown || d.Attempts != 2 || len(s.got()) != 1 {
				t.Fatalf("got %+v after waits %v", d, s.got())
			}
		})
	}
}

// flaky wraps h so that the first n requests for path answer 500.
func flaky(h http.Handler, path string, n int64) http.Handler {
	var seen atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path && seen.Add(1) <= n {
			http.Error(w, `{"error":"busy"}`, http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestDetectContext(t *testing.T) {
	t.Run("canceled before", func(t *testing.T) {
		_, url := newSim(t, aisim.Config{Kind: probes.KindOllama})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var s noSleep
		d, err := engines.Registry().Detect(ctx, client(t), url, opts(&s))
		if !errors.Is(err, context.Canceled) || d.Kind != probes.KindUnknown || len(s.got()) != 0 {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("canceled while waiting", func(t *testing.T) {
		_, url := newSim(t, aisim.Config{Kind: probes.KindOllama, Knobs: aisim.Knobs{Hang: true}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := noSleep{then: func(int) { cancel() }}
		o := opts(&s)
		o.StepTimeout = 20 * time.Millisecond
		d, err := engines.Registry().Detect(ctx, client(t), url, o)
		if !errors.Is(err, context.Canceled) || d.Attempts != 1 {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
}
