// Package cost measures what the agent costs as it ships: the binary built
// as the Dockerfile builds it, on loopback, against simulated AI servers
// (internal/aisim) served from the test process, side by side with Debian's
// blackbox_exporter driven by Debian's Prometheus through /probe for the
// same targets. Nothing here runs in the normal go test: the tests carry the
// bench build tag and report figures; they assert only that the runs did
// what they claim (every probe answered, every target checked).
//
//	scripts/bench-cost                  # every benchmark; see BENCHMARKS.md
//	scripts/bench-cost -run CPU         # one of them
//
// TestCPU: CPU-seconds per 1000 liveness probes, 100 targets at 1 s, the
// agent scraped by its own Prometheus at 1 s, blackbox_exporter driven by a
// second Prometheus for the same 100 targets at 1 s, both at once; with
// keep-alive and with the server closing every connection.
//
// TestMemory: marginal resident memory per target at steady state (every
// history ring full), agents with 0, 100 and 1000 targets at 1 s side by
// side, the -tags nokubernetes build with 0 and 100, and blackbox_exporter
// with 100, each process's RSS split into anonymous and file-backed pages;
// series per target and the size of one scrape at 1000 targets.
//
// TestScale: 10 000 targets at 10 s on one agent, from file_sd_configs:
// scheduler lag and checks per second achieved, and memory against an
// agent with none.
package cost
