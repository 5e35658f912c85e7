package llamacpp

import (
	"errors"
	"fmt"

	"github.com/vitals-dev/vitals/probes"
)

// MetricsSignals maps llama-server's /metrics (with --metrics) to
// probes.Signals. The series have no labels. requests_processing counts
// the slots processing a request and requests_deferred the requests
// waiting for one. The KV-cache gauges (kv_cache_usage_ratio,
// kv_cache_tokens) are gone from current builds; older ones served them.
// Names are from tools/server/server-task.cpp
// (server_task_result_metrics::to_metrics; server.cpp's handle_metrics in
// older trees) and the /metrics section of tools/server/README.md.
//
// llama-server writes values with C++'s default precision of six digits,
// so past a million tokens_predicted_total moves in steps of ten or more:
// a slow generation can leave it where it was for a while.
var MetricsSignals = probes.SignalTable{
	Engine:          probes.EngineLlamaCpp,
	Prefixes:        []string{"llamacpp:"},
	Running:         []probes.Source{{Names: []string{"llamacpp:requests_processing"}}},
	Waiting:         []probes.Source{{Names: []string{"llamacpp:requests_deferred"}}},
	KVCacheUsage:    []probes.Source{{Names: []string{"llamacpp:kv_cache_usage_ratio"}}},
	GeneratedTokens: []probes.Source{{Names: []string{"llamacpp:tokens_predicted_total"}}},
}

// DecodeSlotsSignals decodes GET /slots (served unless llama-server runs
// with --no-slots) into the signals' slot counts: busy slots process a
// request, idle ones do not. Each slot must say is_processing, and there
// must be one slot at least.
func DecodeSlotsSignals(b []byte) (probes.Signals, error) {
	const what = "llamacpp /slots"
	var slots []struct {
		IsProcessing *bool `json:"is_processing"`
	}
	if err := probes.DecodeJSON(what, b, &slots); err != nil {
		return probes.Signals{}, err
	}
	if len(slots) == 0 {
		return probes.Signals{}, &probes.DecodeError{What: what, Err: errors.New("no slots")}
	}
	s := probes.Signals{Engine: probes.EngineLlamaCpp, Reported: probes.FieldSlots}
	for i, sl := range slots {
		if sl.IsProcessing == nil {
			return probes.Signals{}, &probes.DecodeError{What: what, Err: fmt.Errorf("slot %d has no is_processing", i)}
		}
		if *sl.IsProcessing {
			s.SlotsBusy++
		} else {
			s.SlotsIdle++
		}
	}
	return s, nil
}
