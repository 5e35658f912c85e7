package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
)

// The shipped binary with encryption configured but failed at start (its
// key's variable unset) and log_consumer on encrypt: auto stores the logs
// in plaintext and says so: a warning naming the failure, and the records
// counted in vitals_log_consumer_plaintext_fallback_total.
func TestBinaryCountsPlaintextWhenEncryptionFailed(t *testing.T) {
	p := startBinaryReplacing(t, "        enabled: false\n        keys: [{id: k1, env: VITALS_ENCRYPTION_KEY}]\n",
		"        keys: [{id: k1, env: VITALS_TEST_KEY_THAT_IS_NOT_SET}]\n")
	addr := p.address(t)
	client := &http.Client{Timeout: 5 * time.Second}
	fallback := regexp.MustCompile(`(?m)^vitals_log_consumer_plaintext_fallback_total ([0-9.e+]+)$`)
	var last string
	counted := agenttest.Within(20*time.Second, func() bool {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := fallback.FindStringSubmatch(string(b))
		if m == nil {
			return false
		}
		last = m[1]
		return last != "0"
	})
	if !counted {
		t.Fatalf("vitals_log_consumer_plaintext_fallback_total = %q with encryption failed, want more than 0\n%s", last, p.logText())
	}
	warned := p.messages("encrypt is auto and the encryption service failed: storing log records in plaintext until it is back")
	if len(warned) != 1 || !strings.Contains(warned[0]["err"].(string), "VITALS_TEST_KEY_THAT_IS_NOT_SET") {
		t.Fatalf("plaintext warnings %v, want one naming the unset variable\n%s", warned, p.logText())
	}
}
