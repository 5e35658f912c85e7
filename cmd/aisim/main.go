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
	"syscall"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

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
		kind      = fs.String("kind", "openai", "server kind: openai, llamacpp, vllm, ollama, tgi, tei or kserve")
		listen    = fs.String("listen", "127.0.0.1:8000", "address to listen on (port 0 picks a free one)")
		version   = fs.String("version", "", "reported version (default: the kind's)")
		modelType = fs.String("model-type", "", "tei: embedding, classifier or reranker; llamacpp: chat or embedding")
		seed      = fs.Uint64("seed", 1, "seed for jitter and the error rate")
		k         aisim.Knobs
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	kd, err := probes.ParseKind(*kind)
	if err != nil {
		return err
	}
	sim, err := aisim.New(aisim.Config{Kind: kd, Version: *version, ModelType: *modelType, Seed: *seed, Knobs: k})
	if err != nil {
		return err
	}
	defer sim.Close()

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
