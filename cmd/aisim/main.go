package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// kindNames lists the kinds aisim simulates, for -kind.
var kindNames = func() string {
	var names []string
	for _, k := range aisim.Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}()

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "aisim:", err)
		os.Exit(2)
	}
}

// run parses args, serves until ctx ends, then shuts down. It reports the
// address it listens on to stdout, and on ready when not nil.
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("aisim", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		kind          = fs.String("kind", "openai", "server kind: "+kindNames)
		listen        = fs.String("listen", "127.0.0.1:8000", "address to listen on (port 0 picks a free one)")
		metricsListen = fs.String("metrics-listen", "", "also serve the metrics on this address (Triton's own metrics port)")
		version       = fs.String("version", "", "reported version (default: the kind's)")
		modelType     = fs.String("model-type", "", "tei: embedding, classifier or reranker; llamacpp: chat, embedding (--embeddings) or reranker (--reranking)")
		seed          = fs.Uint64("seed", 1, "seed for jitter and the error rate")
		routerModels  = fs.String("router-models", "", "llamacpp: run as llama.cpp's router over these models, name[=status] comma-separated, status unloaded (default), loading, loaded or sleeping")
		noAutoload    = fs.Bool("no-models-autoload", false, "llamacpp router: refuse requests for a model not loaded, as --no-models-autoload")
		preload       = fs.String("preload", "", "ollama: load this model for good at start, as a request with keep_alive -1 does (default: none loaded, the server is cold)")
		k             aisim.Knobs
	)
	fs.Func("latency", "fixed latency added to every answer (e.g. 50ms)", durationFlag(&k.Latency))
	fs.Func("jitter", "random extra latency, uniform in [0, jitter)", durationFlag(&k.Jitter))
	fs.Float64Var(&k.ErrorRate, "error-rate", 0, "fraction of requests answered with 500, 0..1")
	fs.BoolVar(&k.Down, "down", false, "reset every connection")
	fs.BoolVar(&k.Hang, "hang", false, "accept requests and never answer")
	fs.BoolVar(&k.Stuck, "stuck", false, "answer health and list endpoints, hang inference")
	fs.Func("slow-first-token", "delay before the first token", durationFlag(&k.SlowFirstToken))
	fs.Func("token-interval", "pause between streamed tokens", durationFlag(&k.TokenInterval))
	fs.BoolVar(&k.Garbage, "garbage", false, "answer 200 with bodies that are not the protocol")
	fs.BoolVar(&k.Endless, "endless", false, "stream inference forever, past the token limit")
	fs.Func("drip", "send every body one byte at a time, this long apart", durationFlag(&k.Drip))
	fs.StringVar(&k.RedirectTo, "redirect-to", "", "answer every API request with a redirect to this URL")
	fs.IntVar(&k.Slots, "slots", 0, "requests the engine runs at once; the others queue (0: 4)")
	fs.IntVar(&k.Load, "load", 0, "background requests the server keeps in flight (with more than --slots: a growing queue)")
	fs.Float64Var(&k.KVCacheUsage, "kv-cache-usage", 0, "KV-cache usage the metrics report, 0..1 (0: what the running requests hold)")
	fs.Func("load-time", "how long a model load takes: the start-up phase, each reload and each Ollama model load", durationFlag(&k.LoadTime))
	fs.BoolVar(&k.Loading, "loading", false, "stay in the loading phase until the knob is turned off")
	fs.IntVar(&k.SleepLevel, "sleep-level", 0, "start a vLLM engine asleep at level 1 or 2")
	fs.StringVar(&k.APIKey, "api-key", "", "the API key the server wants (Authorization: Bearer <key>)")
	fs.StringVar(&k.ModelName, "model-name", "", "serve the model under this name")
	fs.Func("keep-alive", "Ollama's default keep-alive, OLLAMA_KEEP_ALIVE (default 5m; negative: forever)", func(v string) error {
		d, err := time.ParseDuration(v)
		k.KeepAlive = aisim.Duration(d)
		return err
	})
	fs.IntVar(&k.MaxLoadedModels, "max-loaded-models", 0, "models Ollama keeps loaded at once (0: no limit)")
	fs.BoolVar(&k.MetricsOff, "metrics-off", false, "no metrics endpoint (llama.cpp without --metrics: 501; SGLang without --enable-metrics: 404)")
	fs.BoolVar(&k.SlotsOff, "slots-off", false, "llama.cpp without its /slots endpoint (--no-slots)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	kd := probes.Kind(strings.ToLower(strings.TrimSpace(*kind)))
	if !slices.Contains(aisim.Kinds(), kd) {
		return fmt.Errorf("-kind %q: want one of %s", *kind, kindNames)
	}
	cfg := aisim.Config{Kind: kd, Version: *version, ModelType: *modelType, Seed: *seed, Knobs: k, NoModelsAutoload: *noAutoload}
	if *routerModels != "" {
		var err error
		if cfg.Router, err = aisim.ParseRouterModels(*routerModels); err != nil {
			return fmt.Errorf("-router-models: %w", err)
		}
	}
	sim, err := aisim.New(cfg)
	if err != nil {
		return err
	}
	defer sim.Close()
	// llama.cpp answers while it loads; the other engines open their
	// port once the model is loaded.
	if kd != probes.KindLlamaCpp && kd != probes.KindOllama {
		if sim.Loading() {
			fmt.Fprintf(stdout, "aisim: kind=%s loading\n", kd)
		}
		if err := sim.WaitLoaded(ctx); err != nil {
			return nil
		}
	}
	if *preload != "" {
		if err := sim.Preload(ctx, *preload); err != nil {
			return fmt.Errorf("-preload %q: %w", *preload, err)
		}
	}
	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", *metricsListen, err)
		}
		msrv := &http.Server{Handler: sim.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
		fmt.Fprintf(stdout, "aisim: metrics on http://%s/metrics\n", mln.Addr())
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "aisim: kind=%s version=%s listening on http://%s\n", kd, sim.Version(), addr)
	if ready != nil {
		ready <- addr
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sim.Close() // end hangs so Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func durationFlag(d *aisim.Duration) func(string) error {
	return func(s string) error {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		if v < 0 {
			return fmt.Errorf("%s: want >= 0", s)
		}
		*d = aisim.Duration(v)
		return nil
	}
}
