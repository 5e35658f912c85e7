package probes

import (
	"bytes"
	"errors"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// PickSeries reads Prometheus text exposition b and returns the sum of the
// samples of each counter, gauge or untyped family in names that it holds.
// A line the parser refuses is skipped, with the rest of the text read on,
// up to maxBadLines of them.
func PickSeries(b []byte, names []string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	for skips := 0; len(b) > 0; skips++ {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
		for name, mf := range fams {
			if !want[name] {
				continue
			}
			for _, m := range mf.GetMetric() {
				if v, ok := sampleValue(m); ok {
					out[name] += v
				}
			}
		}
		var pe expfmt.ParseError
		if err == nil || !errors.As(err, &pe) || skips == maxBadLines {
			break
		}
		b = dropLines(b, pe.Line)
	}
	return out
}

// maxBadLines bounds how many refused lines PickSeries skips: each skip
// parses the rest of the text again.
const maxBadLines = 16

// sampleValue is the value of a counter, gauge or untyped sample, if it
// has one (a sample whose value did not parse has none).
func sampleValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// dropLines returns b without its first n lines.
func dropLines(b []byte, n int) []byte {
	for ; n > 0 && len(b) > 0; n-- {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		b = b[i+1:]
	}
	return b
}
