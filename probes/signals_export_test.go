package probes

import (
	"bytes"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// DecodeWhole decodes body the way Decode did before it kept only the
// lines of t's families: the whole body parsed. It is the reference of
// FuzzDecodeKeepsTheSignals.
func DecodeWhole(t SignalTable, body []byte) (Signals, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return Signals{}, err
	}
	declared := map[string]bool{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		if name, _, typ := lineFamily(line); typ {
			declared[string(name)] = true
		}
	}
	return t.signals(fams, declared), nil
}
