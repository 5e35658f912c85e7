package engines_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/engines"
)

// oneBody is a transport that answers every request with the same status
// and body, without a network.
type oneBody struct {
	status int
	body   []byte
}

func (o oneBody) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: o.status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(o.body)), Request: r}, nil
}

// FuzzDetect feeds one body to every question detection asks: whatever a
// server sends, Detect classifies it without panicking.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"version":"1"}`, `{"name":"triton","version":"2"}`, `{"model_type":{"embedding":{}}}`,
		`{"router":"text-generation-router","max_input_tokens":1}`, `{"object":"list","data":[{"id":"m","owned_by":"vllm"}]}`,
		`{"models":[{"name":"x"}],"version":"1","data":[{"id":"a","meta":{"n_ctx_train":1}}],"build_info":"b"}`, `[{"name":"m"}]`,
	} {
		f.Add(200, []byte(s))
	}
	f.Add(503, []byte(`{"error":"loading"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		c := &http.Client{Transport: oneBody{status, body}}
		o := probes.DefaultDetectOptions()
		o.Attempts = 2
		o.Sleep = func(context.Context, time.Duration) error { return nil }
		d, err := engines.Registry().Detect(context.Background(), c, "http://sim.invalid", o)
		if d.Kind == "" || (d.Kind == probes.KindUnknown && d.Reason == "") {
			t.Fatalf("detection without kind or reason: %+v, %v", d, err)
		}
		if strings.Contains(d.Reason, "panicked") {
			t.Fatalf("a detector panicked: %s", d.Reason)
		}
	})
}
