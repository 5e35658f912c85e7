// Package detect is the former home of capability detection, kept as a
// thin layer over probes/engines while its callers move to it; it goes
// away with that move.
package detect

import (
	"context"
	"net/http"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// Options tunes Detect.
type Options = probes.DetectOptions

// Detect is engines.Registry().Detect.
func Detect(ctx context.Context, client *http.Client, baseURL string, opts Options) (probes.Detection, error) {
	return engines.Registry().Detect(ctx, client, baseURL, opts)
}
