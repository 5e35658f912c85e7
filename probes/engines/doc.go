// Package engines is the list of engine families Vitals knows, in the
// order detection asks them, and the registry built from it.
//
// Each family is one package under probes/ that owns, for its kinds, what
// detection asks and how it classifies the answer, the probe set the
// health engine runs (liveness, readiness, synthetic, resources) and the
// decoders of its responses. Adding an engine is one new package that
// exports a Family function, and one line in families (docs/architecture.md
// shows the steps).
package engines
