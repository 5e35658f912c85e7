package probes

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MinRateTokens is the fewest completion tokens a synthetic answer needs
// for its tokens per second to mean something. A rate from one or two
// tokens is the gap between two network writes (issue reports measured
// 1172 to 15851 tokens/s from 2-token answers), not the server's
// throughput; below this OutputTokensPerSecond says nothing.
const MinRateTokens = 8

// BudgetError is a synthetic inference the server refused because of its
// token budget: a 400 or 422 whose body names the token limit parameter
// (max_tokens, max_completion_tokens, max_output_tokens, max_new_tokens,
// num_predict, min_tokens), as when a model wants more output tokens than
// the budget allows. It is the agent's config, not the server, that is
// wrong: Classify gives ClassConfig.
type BudgetError struct {
	// Budget is the token budget the request asked for.
	Budget int
	// Err is the server's answer, an *HTTPError.
	Err error
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("the server refuses a token budget of %d: %v", e.Budget, e.Err)
}

// Unwrap returns the server's answer.
func (e *BudgetError) Unwrap() error { return e.Err }

// budgetParams are the names servers give the token limit of a request:
// OpenAI's (and vLLM's, llama.cpp's, SGLang's), OpenAI's newer ones, TGI's
// and Ollama's; vLLM's min_tokens must not exceed max_tokens.
var budgetParams = []string{"max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens", "num_predict", "min_tokens"}

// AsBudgetError returns err as a *BudgetError when it is a refusal of the
// token budget: an *HTTPError with status 400 or 422 whose body names a
// token limit parameter and does not say the parameter is unsupported (a
// server that wants max_completion_tokens instead of max_tokens is not
// helped by a larger budget). Any other err is returned as it is.
func AsBudgetError(err error, budget int) error {
	var he *HTTPError
	if err == nil || !errors.As(err, &he) || (he.Status != http.StatusBadRequest && he.Status != http.StatusUnprocessableEntity) {
		return err
	}
	body := strings.ToLower(he.Body)
	for _, s := range []string{"unsupported", "not supported", "unrecognized", "unknown"} {
		if strings.Contains(body, s) {
			return err
		}
	}
	for _, p := range budgetParams {
		if strings.Contains(body, p) {
			return &BudgetError{Budget: budget, Err: err}
		}
	}
	return err
}
