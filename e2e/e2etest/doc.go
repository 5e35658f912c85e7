// Package e2etest holds what the stack tests share: finding the Debian
// binaries they run (promtool, amtool, prometheus, prometheus-alertmanager,
// chromium), free loopback ports, processes that end with the test,
// polling with a deadline, and /metrics bodies parsed with expfmt
// (ParseMetrics).
//
// A test that needs a binary that is not installed fails when CI=true (so CI
// cannot pass by running nothing) and is skipped otherwise.
package e2etest
