package logtap

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestTapPassesOnAndFlattens(t *testing.T) {
	var out bytes.Buffer
	tap := New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var mu sync.Mutex
	var got []Record
	detach := tap.Attach(func(r Record) { mu.Lock(); got = append(got, r); mu.Unlock() })
	log := slog.New(tap).With("plugin", "p1").WithGroup("req")
	if _, ok := Find(log.Handler()); !ok {
		t.Fatal("Find does not see the tap behind a derived logger")
	}
	log.Info("hello", "id", 7, slog.Group("peer", "addr", "127.0.0.1"))
	log.Debug("filtered by level")
	detach()
	detach()
	log.Info("after detach")

	if !strings.Contains(out.String(), "hello") || !strings.Contains(out.String(), "after detach") {
		t.Fatalf("next handler missed records: %s", out.String())
	}
	if len(got) != 1 {
		t.Fatalf("sink got %d records, want 1: %+v", len(got), got)
	}
	r := got[0]
	for k, want := range map[string]string{"plugin": "p1", "req.id": "7", "req.peer.addr": "127.0.0.1"} {
		if r.Attr(k) != want {
			t.Errorf("attr %s = %q, want %q (all %v)", k, r.Attr(k), want, r.Attrs)
		}
	}
	if r.Message != "hello" || r.Level != slog.LevelInfo {
		t.Errorf("record %+v", r)
	}
	if _, ok := Find(slog.NewTextHandler(&out, nil)); ok {
		t.Error("Find on a plain handler")
	}
}
