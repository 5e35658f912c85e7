package main

import (
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/demoai"
	"github.com/vitals-dev/vitals/plugins/encryption"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/plugins/logconsumer"
	"github.com/vitals-dev/vitals/plugins/messagebus"
	"github.com/vitals-dev/vitals/plugins/ratelimiting"
	"github.com/vitals-dev/vitals/plugins/routing"
	"github.com/vitals-dev/vitals/plugins/security"
	"github.com/vitals-dev/vitals/plugins/statuspage"
	"github.com/vitals-dev/vitals/plugins/validation"
	"github.com/vitals-dev/vitals/probes"
)

// shutdownFlush bounds the final flush of spans at exit.
const shutdownFlush = 5 * time.Second

// registry returns the plugins this binary ships.
func registry() (*agent.Registry, error) {
	reg := agent.NewRegistry()
	for name, f := range map[string]agent.Factory{
		messagebus.Name:   messagebus.Factory,
		logconsumer.Name:  logconsumer.Factory,
		security.Name:     security.Factory,
		encryption.Name:   encryption.Factory,
		ratelimiting.Name: ratelimiting.Factory,
		validation.Name:   validation.Factory,
		routing.Name:      routing.Factory,
		extmanager.Name:   extmanager.Factory,
		statuspage.Name:   statuspage.Factory,
		// In-process simulated AI plugins for the demo config.
		"demo_llm":      demoai.Factory("demo_llm", probes.KindLlamaCpp),
		"demo_ollama":   demoai.Factory("demo_ollama", probes.KindOllama),
		"demo_embedder": demoai.Factory("demo_embedder", probes.KindTEI),
	} {
		if err := reg.Register(name, f); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
