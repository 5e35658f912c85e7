// Package demoai holds the demo's in-process AI plugins: host plugins that
// each serve a simulated AI server (internal/aisim) on a loopback port and
// implement catalog.AI, so that the agent started with no arguments has
// AI plugins of different kinds to discover, detect and check. Their
// simulated servers take the aisim knobs over HTTP at /aisim/knobs, which
// makes the demo a place to watch a plugin turn slow, stuck or down.
package demoai
