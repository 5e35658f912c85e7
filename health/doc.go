// Package health is the ExtManager's AI health engine: it checks every AI
// plugin in the catalog on a schedule, turns the results into a damped
// state per plugin, and tells everyone.
//
// The pieces, in the order a check goes through them:
//
//   - Scheduler: one timer over a heap of due times; per-plugin intervals,
//     start times spread with jitter, a global concurrency bound, never two
//     checks of one plugin at once, an immediate re-check after a state
//     change, faster checks while unhealthy, and its own lag measured
//     (vitals_scheduler_lag_seconds).
//   - The check: for servers, the probe set of the server's kind, from the
//     engine family that owns it (Options.Registry, probes/engines by
//     default): liveness, then readiness, then the opt-in synthetic
//     inference (skipped while the server's own counters show others'
//     requests completing: idle_aware), then resources. The engine has no
//     case per kind. Or the
//     probes the ExtManager supplies for bus plugins (heartbeat freshness,
//     health request/reply) and in-process plugins without an endpoint.
//     Each check is a span; a synthetic inference is a GenAI client span.
//   - Machine: unknown → healthy ⇄ degraded ⇄ unhealthy with Kubernetes-style
//     consecutive failure and success thresholds, a latency and
//     time-to-first-token SLO and an error-rate window with hysteresis that
//     turn healthy into degraded, and the dependency rule (a plugin whose
//     dependency is unhealthy is at best degraded).
//   - Engine: runs the above, exports the vitals_ai_* metrics, records every
//     check and transition in History (a bounded ring, and the SQLite store
//     of exporters/store when configured), and calls the Options hooks on
//     every verdict and transition; the ExtManager turns those into catalog
//     health, bus messages on health.status.<plugin> and alerts.<severity>,
//     and log lines.
//   - Roll-up: the overall AI health and the health per capability by a
//     policy (all, any, quorum, per_capability).
//
// The package knows nothing of the catalog: the ExtManager feeds it Targets.
// It depends on agent, probes and exporters/store (docs/architecture.md).
package health
