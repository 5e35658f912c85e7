package main

import (
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/plugins/messagebus"
)

// shutdownFlush bounds the final flush of spans at exit.
const shutdownFlush = 5 * time.Second

// registry returns the plugins this binary ships.
func registry() (*agent.Registry, error) {
	reg := agent.NewRegistry()
	for name, f := range map[string]agent.Factory{
		messagebus.Name: messagebus.Factory,
	} {
		if err := reg.Register(name, f); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
