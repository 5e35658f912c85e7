//go:build race

package health_test

// raceEnabled: the race detector's instrumentation makes every frame
// larger, so the stack a check takes is not the one it takes as shipped.
const raceEnabled = true
