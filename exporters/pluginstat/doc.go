// Package pluginstat attributes the agent's goroutines to its in-process
// plugins and exports the counts as Prometheus metrics, so that resource
// monitoring covers the agent's own plugins as well as external ones.
//
// The host runs every plugin lifecycle step under pprof labels
// (plugin=<name>, step=<step>), and goroutines inherit the labels of the
// goroutine that started them, so the goroutine profile says which plugin
// started each goroutine. Heap allocations carry no labels in Go, so they
// cannot be attributed per plugin this way; the process-wide go_memstats_*
// metrics remain the measure of memory.
package pluginstat
