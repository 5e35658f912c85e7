package engines_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/internal/heaptest"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/openai"
)

// A server that streams past the token limit is stopped at the budget.
func TestSyntheticStopsAtTokenBudget(t *testing.T) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, kind := range []probes.Kind{probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama} {
		t.Run(string(kind), func(t *testing.T) {
			sim, base := serve(t, aisim.Config{Kind: kind})
			if kind == probes.KindOllama {
				warm(t, c, base, "tiny:latest")
			}
			tg := detected(t, c, kind, base)
			sim.SetEndless(true)
			// The deadline only ends the test if the reader is not bounded.
			cfg := probes.Config{Timeout: 10 * time.Second, MaxTokens: 2}
			res, err := probes.Run(context.Background(), set(tg.Kind).Synthetic, c, tg, cfg, nil)
			if !errors.Is(err, probes.ErrTooLarge) || res.Class != probes.ClassBadResponse {
				t.Fatalf("synthetic on an endless stream = class %q, %v; want bad_response wrapping ErrTooLarge", res.Class, err)
			}
		})
	}
}

// heapGrowth returns how much the live heap grew while f ran, with what f
// returned still alive.
func heapGrowth(f func() any) (int64, any) {
	var v any
	return heaptest.Growth(func() { v = f() }), v
}

// With no token limit at all, the byte bound stops an endless stream, and
// what the reader keeps of it stays small.
func TestEndlessStreamHeapBounded(t *testing.T) {
	const maxGrowth = 1 << 20
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	// The deadline only ends a read that is not bounded.
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("openai", func(t *testing.T) {
		sim, base := serve(t, aisim.Config{Kind: probes.KindOpenAI})
		sim.SetEndless(true)
		var err error
		grew, res := heapGrowth(func() any {
			var r openai.StreamResult
			r, err = openai.New(c, base).ChatStream(ctx(t), openai.ChatRequest{Model: "sim-chat", Messages: []openai.Message{{Role: "user", Content: "hi"}}})
			return r
		})
		t.Logf("heap grew %d bytes over %d chunks", grew, res.(openai.StreamResult).Chunks)
		if grew > maxGrowth {
			t.Errorf("heap grew %d bytes reading an endless stream, want under %d", grew, maxGrowth)
		}
		if !errors.Is(err, probes.ErrTooLarge) {
			t.Fatalf("ChatStream on an endless stream: %v, want ErrTooLarge", err)
		}
	})
	t.Run("ollama", func(t *testing.T) {
		sim, base := serve(t, aisim.Config{Kind: probes.KindOllama})
		sim.SetEndless(true)
		var err error
		grew, res := heapGrowth(func() any {
			var r ollama.StreamResult
			r, err = ollama.New(c, base).ChatStream(ctx(t), ollama.ChatRequest{Model: "tiny", Messages: []ollama.Message{{Role: "user", Content: "hi"}}})
			return r
		})
		t.Logf("heap grew %d bytes over %d chunks", grew, res.(ollama.StreamResult).Chunks)
		if grew > maxGrowth {
			t.Errorf("heap grew %d bytes reading an endless stream, want under %d", grew, maxGrowth)
		}
		if !errors.Is(err, probes.ErrTooLarge) {
			t.Fatalf("ChatStream on an endless stream: %v, want ErrTooLarge", err)
		}
	})
}

// Liveness reads the whole answer within its timeout: headers at once and
// a body dripped a byte a second is not alive. (vLLM's, TGI's and KServe's
// liveness endpoints answer with an empty body, so there is nothing to
// drip.)
func TestLivenessCountsTheBody(t *testing.T) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, kind := range []probes.Kind{probes.KindUnknown, probes.KindOpenAI, probes.KindLlamaCpp, probes.KindOllama} {
		t.Run(string(kind), func(t *testing.T) {
			simKind := kind
			if kind == probes.KindUnknown {
				simKind = probes.KindOpenAI
			}
			sim, base := serve(t, aisim.Config{Kind: simKind})
			sim.SetDrip(time.Second)
			tg := probes.Target{ID: "t", BaseURL: base, Kind: kind}
			res, err := probes.Run(context.Background(), set(kind).Liveness, c, tg, probes.Config{Timeout: 300 * time.Millisecond}, nil)
			if res.Class != probes.ClassTimeout {
				t.Fatalf("liveness on a dripping body = class %q, %v; want timeout", res.Class, err)
			}
		})
	}
}

// A redirect to another host is not followed: the probe fails naming it,
// and the other host is never asked.
func TestRedirectToAnotherHostNotFollowed(t *testing.T) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, kind := range []probes.Kind{probes.KindUnknown, probes.KindOpenAI, probes.KindOllama} {
		t.Run(string(kind), func(t *testing.T) {
			simKind := kind
			if kind == probes.KindUnknown {
				simKind = probes.KindOpenAI
			}
			other, otherBase := serve(t, aisim.Config{Kind: simKind})
			sim, base := serve(t, aisim.Config{Kind: simKind})
			if err := sim.SetRedirectTo(otherBase); err != nil {
				t.Fatal(err)
			}
			tg := probes.Target{ID: "t", BaseURL: base, Kind: kind}
			res, err := probes.Run(context.Background(), set(kind).Liveness, c, tg, probes.Config{Timeout: 5 * time.Second}, nil)
			if !errors.Is(err, probes.ErrRedirect) || res.Class != probes.ClassBadResponse {
				t.Fatalf("liveness redirected to another host = class %q, %v; want bad_response wrapping ErrRedirect", res.Class, err)
			}
			if n := other.Requests(); n != 0 {
				t.Fatalf("the other host got %d requests, want 0", n)
			}
		})
	}
}
