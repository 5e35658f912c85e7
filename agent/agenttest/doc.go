// Package agenttest holds fakes and shared tests for the plugin host: a
// scriptable fake Plugin that errors, panics or hangs in any step, a
// container pre-filled with the host's services, and the conformance test
// every plugin runs.
package agenttest
