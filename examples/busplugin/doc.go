// Command busplugin is a minimal external plugin process for the Vitals
// message bus: it connects to the broker, announces itself on
// plugin.announce, heartbeats on plugin.heartbeat, answers
// health.request.<name> on the request's reply topic, and says goodbye on
// plugin.goodbye when it gets SIGINT or SIGTERM. Each heartbeat carries
// the announcement too, so an agent that restarted (and reconnected)
// registers the plugin again from its next heartbeat.
//
//	go run ./examples/busplugin -name gpu_probe \
//	    -pub tcp://127.0.0.1:5555 -sub tcp://127.0.0.1:5556
//
// With PLAIN auth on the broker, pass -user and set VITALS_BUS_PASSWORD.
package main
