// Package agenttest holds fakes and shared tests for the plugin host: a
// scriptable fake Plugin that errors, panics, hangs or leaves a goroutine
// running in any step, a Host and container for running a plugin by hand
// (NewHost, Stop) as the lifecycle manager would, the conformance test
// every plugin runs, and Eventually.
package agenttest
