package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/logtap"
	"github.com/vitals-dev/vitals/exporters/pluginstat"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/internal/exepages"
	"github.com/vitals-dev/vitals/internal/maxprocs"
	"github.com/vitals-dev/vitals/internal/procmetrics"
	"github.com/vitals-dev/vitals/plugins/encryption"
	"github.com/vitals-dev/vitals/plugins/security"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// revision is the VCS revision for builds that carry no VCS stamp (a build
// from a source tree without .git, such as the container build): set it
// with -ldflags "-X main.revision=$(git rev-parse HEAD)".
var revision = ""

//go:embed core.yaml
var defaultConfig []byte

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version", "-version":
			fmt.Fprintf(stdout, "vitals %s (%s, %s/%s)\n", fullVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return 0
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "help":
			args = []string{"--help"}
		case "run":
			args = args[1:]
		}
	}
	return serve(args, stdout, stderr)
}

// defaultGOGC is the collector's target where the environment sets no
// GOGC: the heap may grow by less than a third of its live size between
// collections, not all of it. Most of the agent's heap lives as long as
// its targets (each one's history ring, series and state), and a check
// leaves little garbage, so collecting more often costs little: side by
// side at 1000 targets at 1 s (BENCHMARKS.md), 30 held a tenth less
// resident memory a target than 50, which held a fifth less than the
// runtime's 100, each for 10 to 20 % more CPU. (Prometheus, whose heap
// is long-lived too, runs at 75 unless told otherwise.)
const defaultGOGC = 30

// usage prints the commands and flags once. The flag set's own Usage is a
// no-op, so a parse error or -help does not print it a second time.
func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `Usage:
  vitals [flags]              run the agent
  vitals check-config FILE    validate a config file and exit
  vitals version              print the version

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: vitals check-config FILE")
		return 2
	}
	reg, err := registry()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg, err := agent.LoadFile(context.Background(), args[0], reg, nil)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	var enabled []string
	for _, name := range reg.Names() {
		if cfg.Plugin(name).Enabled {
			enabled = append(enabled, name)
		}
	}
	fmt.Fprintf(stdout, "%s: ok; enabled plugins: %v\n", args[0], enabled)
	return 0
}

// printErrors prints joined errors one per line.
func printErrors(w io.Writer, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func serve(args []string, stdout, stderr io.Writer) int {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
	fs := flag.NewFlagSet("vitals", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", os.Getenv("VITALS_CONFIG"), "config file (default: $VITALS_CONFIG, else the built-in demo config)")
	logFormat := fs.String("log-format", "", "log format, text or json (overrides core.log.format)")
	logLevel := fs.String("log-level", "", "log level, debug, info, warn or error (overrides core.log.level)")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, stdout)
			return 0
		}
		fmt.Fprintf(stderr, "vitals: %v\n", err)
		usage(fs, stderr)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vitals: unexpected argument %q\n", fs.Arg(0))
		usage(fs, stderr)
		return 2
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := registry()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var cfg *agent.Config
	if *configPath != "" {
		cfg, err = agent.LoadFile(ctx, *configPath, reg, nil)
	} else {
		cfg, err = agent.Parse(ctx, "built-in demo config", defaultConfig, reg, nil)
	}
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	if *logFormat != "" {
		cfg.Core.Log.Format = *logFormat
	}
	if *logLevel != "" {
		cfg.Core.Log.Level = *logLevel
	}
	level := new(slog.LevelVar)
	level.Set(agent.ParseLevel(cfg.Core.Log.Level))
	var base slog.Handler
	switch cfg.Core.Log.Format {
	case "json":
		base = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	case "text":
		base = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		fmt.Fprintf(stderr, "vitals: --log-format %q: want text or json\n", cfg.Core.Log.Format)
		return 2
	}

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "vitals", ServiceVersion: fullVersion()})
	if err != nil {
		slog.New(base).Error("OpenTelemetry setup failed", "err", err)
		return 1
	}
	// Records logged inside a span carry its trace_id and span_id; with a
	// logs exporter they also leave over OTLP (the slog bridge). The tap
	// lets log_consumer put the agent's own records on the bus and
	// security turn audit lines into audit records.
	handler := telemetry.WithTraceIDs(base)
	if h := tel.LogHandler(level); h != nil {
		handler = slog.NewMultiHandler(handler, h)
	}
	log := slog.New(logtap.New(handler))
	slog.SetDefault(log)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry export failed", "err", err)
	}))
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), shutdownFlush)
		defer scancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry flush failed", "err", err)
		}
	}()

	go maxprocs.Run(ctx, log) // one P while the agent is nearly idle

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(
		collectors.NewGoCollector(),
		procmetrics.NewCollector(), // client_golang's process metrics, cheaper per scrape
		pluginstat.NewCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "vitals_build_info",
			Help:        "Version of the running agent; always 1.",
			ConstLabels: buildLabels(),
		}, func() float64 { return 1 }),
	)

	ln, err := net.Listen("tcp", cfg.Core.APIGateway.Listen)
	if err != nil {
		log.Error("cannot listen (core.api_gateway.listen)", "address", cfg.Core.APIGateway.Listen, "err", err)
		return 1
	}
	if ln, err = encryption.WrapListener(cfg, ln); err != nil { // TLS when the encryption plugin says so
		log.Error("TLS setup failed", "err", err)
		return 1
	}
	if w := security.ListenWarning(cfg); w != "" {
		log.Warn(w)
	}

	a, err := agent.New(agent.Options{
		Registry: reg, Config: cfg, ConfigPath: *configPath, Logger: log, LogLevel: level,
		TracerProvider: tel.TracerProvider(), Tracez: tel.Tracez(), Metrics: metrics, Version: fullVersion(), Listener: ln,
		Guard: security.Guard,
	})
	if err != nil {
		log.Error("agent setup failed", "err", err)
		return 1
	}
	source := *configPath
	if source == "" {
		source = "built-in demo config (pass --config FILE to use your own)"
	}
	tracesTo, metricsTo, logsTo := tel.Describe()
	log.Info("vitals starting", "version", fullVersion(), "config", source, "traces", tracesTo, "metrics", metricsTo, "logs", logsTo)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		stopping := false
		for sig := range sigs {
			switch {
			case sig == syscall.SIGHUP:
				if *configPath == "" {
					log.Warn("SIGHUP ignored: the agent runs on its built-in config")
					continue
				}
				log.Info("SIGHUP: reloading config", "file", *configPath)
				go func() { _ = a.Reload(ctx) }() // logged and counted inside
			case stopping:
				log.Warn("second signal; exiting now", "signal", sig.String())
				os.Exit(1)
			default:
				stopping = true
				log.Info("signal received; shutting down gracefully (send it again to exit at once)", "signal", sig.String())
				cancel()
			}
		}
	}()

	go func() {
		select {
		case <-a.Started():
		case <-ctx.Done():
			return
		}
		// Package initialisation and the plugins' Start have run: the
		// pages of the binary only they touched need not stay resident.
		if n, err := exepages.Release(); err != nil {
			log.Warn("cannot release the executable's start-up pages", "err", err)
		} else {
			log.Debug("released the executable's start-up pages", "mapped_bytes", n)
		}
	}()

	if err := a.Run(ctx); err != nil {
		log.Error("vitals stopped with an error", "err", err)
		return 1
	}
	return 0
}

// buildLabels are vitals_build_info's labels: the version, the Go version,
// and the VCS revision and whether the tree had local changes, from the
// build's VCS stamp ("unknown" where the build carries none).
func buildLabels() prometheus.Labels {
	bi, _ := debug.ReadBuildInfo()
	rev, modified := vcsStamp(bi, revision)
	return prometheus.Labels{"version": fullVersion(), "goversion": runtime.Version(), "revision": rev, "modified": modified}
}

// vcsStamp reads vcs.revision and vcs.modified from bi; fallback is the
// revision set at link time, used when bi has none.
func vcsStamp(bi *debug.BuildInfo, fallback string) (rev, modified string) {
	rev, modified = "unknown", "unknown"
	if fallback != "" {
		rev = fallback
	}
	if bi == nil {
		return rev, modified
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				rev = s.Value
			}
		case "vcs.modified":
			modified = s.Value
		}
	}
	return rev, modified
}

func fullVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
