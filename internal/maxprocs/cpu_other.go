//go:build !unix

package maxprocs

import "time"

// processCPU is not read here: Run leaves GOMAXPROCS at the default.
var processCPU func() (time.Duration, error)
