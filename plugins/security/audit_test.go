package security_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/exporters/audit"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// auditRecords returns the audit records whose action starts with action.
func (l *live) auditRecords(action string) []audit.Record {
	l.t.Helper()
	code, body := l.get("/api/v1/admin/audit?limit=1000&action="+action, adminToken)
	if code != 200 {
		l.t.Fatalf("audit %s: %d %s", action, code, body)
	}
	var out struct {
		Records []audit.Record `json:"records"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		l.t.Fatalf("audit %s: %v", action, err)
	}
	return out.Records
}

// barrier makes an audit record (an HTTP 401) and waits until it is
// stored: the log keeps records in order, so whatever was recorded before
// it is stored too.
func (l *live) barrier() {
	l.t.Helper()
	before := len(l.auditRecords("http.denied"))
	l.get("/api/v1/admin/plugins", "not-a-token")
	eventually(l.t, "barrier record stored", func() bool { return len(l.auditRecords("http.denied")) > before })
}

// TestBusDenialAuditedOnceNotFromLogs: the broker records a denied
// publish through the audit recorder, once; a log line that says the same,
// with every attribute a log-matching auditor would look for, is only a
// log line.
func TestBusDenialAuditedOnceNotFromLogs(t *testing.T) {
	s := newSite(t)
	l := startAgent(t, s, nil)
	ext := external(t, s, "ext_probe")
	ctx := t.Context()
	alert, _ := bus.NewProto(&busv1.Alert{Name: "Fake"})

	// The connection is up and the broker has found the recorder once a
	// denial of another topic is audited.
	eventually(t, "broker records denials", func() bool {
		_ = ext.Publish(ctx, "alerts.warning", alert)
		for _, r := range l.auditRecords(audit.ActionBusDenied) {
			if r.Target == "publish alerts.warning" {
				return true
			}
		}
		return false
	})
	critical := func() (n int) {
		for _, r := range l.auditRecords(audit.ActionBusDenied) {
			if r.Target == "publish alerts.critical" {
				n++
			}
		}
		return n
	}

	// One denied publish: one record, under the connection's identity.
	if err := ext.Publish(ctx, "alerts.critical", alert); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the denied publish audited", func() bool { return critical() > 0 })
	l.barrier()
	if n := critical(); n != 1 {
		t.Fatalf("one denied publish made %d audit records", n)
	}
	recs := l.auditRecords(audit.ActionBusDenied)
	var got audit.Record
	for _, r := range recs {
		if r.Target == "publish alerts.critical" {
			got = r
		}
	}
	if !strings.HasPrefix(got.Actor, "conn:") || got.Remote == "" || got.Outcome != audit.OutcomeDenied ||
		!strings.Contains(got.Detail, "only the agent publishes this topic") {
		t.Errorf("record %+v: want the connection's peer and address, denied, with the reason", got)
	}

	// The same words in the agent's log, marked as the broker once marked
	// them, make no record.
	all := len(l.auditRecords(""))
	l.log.Warn("bus permission denied", "audit", true, "user", "anonymous", "peer", "conn:99@127.0.0.1:1",
		"remote", "127.0.0.1:1", "operation", "publish", "topic", "alerts.critical", "reason", "only the agent publishes this topic")
	l.log.Warn("bus authentication failed", "audit", true, "user", "mallory")
	l.barrier()
	if n := critical(); n != 1 {
		t.Errorf("a log line made an audit record: %d records of the denied publish, want 1", n)
	}
	if n := len(l.auditRecords("")); n != all+1 { // the barrier's own
		t.Errorf("log lines made %d audit records", n-all-1)
	}
	for _, r := range l.auditRecords("") {
		if r.Actor == "mallory" || r.Actor == "conn:99@127.0.0.1:1" {
			t.Errorf("audit record from a log line: %+v", r)
		}
	}
}
