package probes_test

import (
	"errors"
	"testing"

	"github.com/vitals-dev/vitals/probes"
)

func TestAsBudgetError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   probes.ErrorClass
	}{
		// OpenAI's answer to a budget under the model's minimum.
		{"openai minimum", 400, `{"error":{"message":"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 2 instead.","type":"invalid_request_error","param":"max_output_tokens","code":"integer_below_min_value"}}`, probes.ClassConfig},
		// vLLM's SamplingParams check, a model whose generation config sets min_tokens.
		{"vllm min_tokens", 400, `{"object":"error","message":"min_tokens must be less than or equal to max_tokens=2, got 16.","type":"BadRequestError","param":null,"code":400}`, probes.ClassConfig},
		// TGI's validation answers 422.
		{"tgi validation", 422, `{"error":"Input validation error: ` + "`max_new_tokens`" + ` must be strictly positive","error_type":"validation"}`, probes.ClassConfig},
		// A parameter the model does not take is not helped by a larger budget.
		{"unsupported", 400, `{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","code":"unsupported_parameter"}}`, probes.ClassHTTP4xx},
		{"other 400", 400, `{"error":"messages: at least one message is required"}`, probes.ClassHTTP4xx},
		{"5xx", 500, `max_tokens`, probes.ClassHTTP5xx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			he := &probes.HTTPError{Method: "POST", URL: "http://127.0.0.1:1/v1/chat/completions", Status: tc.status, Body: tc.body}
			err := probes.AsBudgetError(he, 2)
			if got := probes.Classify(err); got != tc.want {
				t.Fatalf("class = %q, want %q (%v)", got, tc.want, err)
			}
			var be *probes.BudgetError
			if tc.want == probes.ClassConfig && (!errors.As(err, &be) || be.Budget != 2 || !errors.As(err, &he)) {
				t.Fatalf("%v is not a *BudgetError of budget 2 wrapping the *HTTPError", err)
			}
		})
	}
	if probes.AsBudgetError(nil, 2) != nil {
		t.Error("nil is a budget error")
	}
}
