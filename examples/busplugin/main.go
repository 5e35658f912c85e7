package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vitals-dev/vitals/bus"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func main() {
	var (
		name     = flag.String("name", "busplugin", "plugin name (topic namespace)")
		pub      = flag.String("pub", bus.DefaultPublishEndpoint, "broker endpoint for publishers")
		sub      = flag.String("sub", bus.DefaultSubscribeEndpoint, "broker endpoint for subscribers")
		user     = flag.String("user", "", "PLAIN user name; the password comes from VITALS_BUS_PASSWORD")
		interval = flag.Duration("heartbeat", 5*time.Second, "heartbeat interval")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *name, *pub, *sub, *user, os.Getenv("VITALS_BUS_PASSWORD"), *interval); err != nil {
		log.Error("busplugin", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, name, pub, sub, user, pass string, interval time.Duration) error {
	c := bus.Dial(bus.Options{
		PublishEndpoint:   pub,
		SubscribeEndpoint: sub,
		Name:              name,
		Username:          user,
		Password:          pass,
		Logger:            log,
	})
	defer c.Close() // sends what is still queued, the goodbye included

	reqs, err := c.Subscribe(ctx, "health.request."+name)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	started := time.Now()
	self := &busv1.Announce{
		Name:                name,
		Version:             "0.1.0",
		Description:         "example external plugin",
		Capabilities:        []string{"example"},
		Pid:                 int32(os.Getpid()),
		HeartbeatIntervalMs: interval.Milliseconds(),
	}
	announce, err := bus.NewProto(self)
	if err != nil {
		return err
	}
	if err := c.Publish(ctx, "plugin.announce", announce); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	log.Info("announced", "name", name, "pub", pub, "sub", sub)

	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			bye, _ := bus.NewProto(&busv1.Goodbye{Name: name, Reason: "signal"})
			if err := c.Publish(context.Background(), "plugin.goodbye", bye); err != nil {
				return fmt.Errorf("goodbye: %w", err)
			}
			log.Info("goodbye sent")
			return nil
		case <-tick.C:
			seq++
			// The announcement rides along: an agent that restarted
			// registers the plugin again from it.
			hb, _ := bus.NewProto(&busv1.Heartbeat{Name: name, Sequence: seq, UptimeSeconds: time.Since(started).Seconds(), Announce: self})
			if err := c.Publish(ctx, "plugin.heartbeat", hb); err != nil && !errors.Is(err, bus.ErrQueueFull) {
				return fmt.Errorf("heartbeat: %w", err)
			}
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			t0 := time.Now()
			resp, _ := bus.NewProto(&busv1.HealthResponse{
				Plugin:         name,
				State:          busv1.HealthState_HEALTH_STATE_HEALTHY,
				Message:        "ok",
				LatencySeconds: time.Since(t0).Seconds(),
			})
			if req.ReplyTo == "" {
				req.ReplyTo = "health.response"
			}
			if err := bus.Reply(req.Context(ctx), c, req, resp); err != nil {
				log.Warn("health reply failed", "err", err)
			}
		}
	}
}
