// Package check is the former home of the per-kind health probes, kept as
// a thin layer over the probe sets of probes/engines while the health
// engine moves to them; it goes away with that move.
package check

import (
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// Probe names.
const (
	Liveness  = probes.Liveness
	Readiness = probes.Readiness
	Synthetic = probes.Synthetic
	Resources = probes.Resources
)

// ServerSeries marks the kinds whose resource probe reads the server's
// /metrics.
var ServerSeries = map[probes.Kind][]string{
	probes.KindLlamaCpp: {"llamacpp"}, probes.KindVLLM: {"vllm"}, probes.KindTGI: {"tgi"}, probes.KindTEI: {"te"},
}

// ProcFS reads process statistics; nil means the default /proc.
type ProcFS = probes.ProcFS

// ErrNoListener is probes.ErrNoListener.
var ErrNoListener = probes.ErrNoListener

// FindListener is probes.FindListener.
func FindListener(fs ProcFS, port int) (int, error) { return probes.FindListener(fs, port) }

// LivenessProbe returns the liveness probe of kind k.
func LivenessProbe(k probes.Kind) probes.Probe { return engines.Registry().Probes(k).Liveness }

// ReadinessProbe returns the readiness probe of kind k, nil when it has
// none.
func ReadinessProbe(k probes.Kind) probes.Probe { return engines.Registry().Probes(k).Readiness }

// Operation returns the synthetic inference kind k runs for t, or "".
func Operation(k probes.Kind, t probes.Target) string {
	return engines.Registry().Probes(k).SyntheticOp(t)
}

// SyntheticProbe returns the synthetic inference probe of kind k.
func SyntheticProbe(k probes.Kind) probes.Probe { return engines.Registry().Probes(k).Synthetic }

// ResourcesProbe returns the resource probe of kind k.
func ResourcesProbe(k probes.Kind, fs ProcFS) probes.Probe {
	return probes.ResourcesProbe(func(pid int) (probes.ProcessStats, error) { return probes.ReadProcess(fs, pid) },
		engines.Registry().Probes(k).Resources)
}
