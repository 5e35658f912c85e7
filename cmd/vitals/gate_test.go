package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The shipped binary wires the gate: with a token whose variable is unset,
// security fails and the admin API is closed, not open.
func TestBinaryFailsClosedWhenSecurityFails(t *testing.T) {
	p := startBinaryReplacing(t, "        # tokens: [{name: ops, role: admin, env: VITALS_TOKEN_OPS}]\n",
		"        tokens: [{name: ops, role: admin, env: VITALS_TEST_TOKEN_THAT_IS_NOT_SET}]\n")
	addr := p.address(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
		req.Header.Set("X-Requested-With", "test")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Wait for startup to finish: security has failed by then.
	for {
		code, body := get("GET", "/readyz?verbose")
		if strings.Contains(body, "plugin:security failed") {
			if code != 503 || !strings.Contains(body, "[-]auth authentication is not available: the security plugin failed") ||
				!strings.Contains(body, "VITALS_TEST_TOKEN_THAT_IS_NOT_SET") {
				t.Fatalf("readyz: %d %s", code, body)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("security did not fail; readyz: %d %s", code, body)
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/admin/plugins"},
		{"POST", "/api/v1/admin/plugins/extmanager/disable"},
	} {
		if code, body := get(tc.method, tc.path); code != 503 || !strings.Contains(body, "the security plugin failed") {
			t.Errorf("%s %s with security failed: %d %s, want 503", tc.method, tc.path, code, body)
		}
	}
	if code, _ := get("GET", "/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}
