package logconsumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/bus/bustest"
	"github.com/vitals-dev/vitals/exporters/logtap"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/plugins/encryption"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	p    *Plugin
	c    *agent.Container
	h    *agent.PluginHost
	bus  *bustest.Bus
	reg  *prometheus.Registry
	path string
}

type opts struct {
	yaml string
	// cipher, if set, is the encryption plugin's section: the plugin is
	// initialized and provides the encryption service.
	cipher string
	// encryption, if set, is what a lookup of the encryption service
	// returns.
	encryption func() (any, error)
	log        *slog.Logger
	bus        *bustest.Bus
	path       string
}

func start(t *testing.T, o opts) *env {
	t.Helper()
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "logs.db")
	}
	if o.bus == nil {
		o.bus = bustest.New()
	}
	s, err := agent.NewSection("path: " + o.path + "\nflush_interval: 10ms\n" + o.yaml)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Factory(s)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{p: pl.(*Plugin), c: agenttest.NewContainer(t), bus: o.bus, reg: prometheus.NewRegistry(), path: o.path}
	must(t, e.c.Provide(bus.ServiceName, bus.Provider(o.bus)))
	if o.cipher != "" {
		sec, err := agent.NewSection(o.cipher)
		must(t, err)
		enc, err := encryption.Factory(sec)
		must(t, err)
		must(t, enc.Initialize(context.Background(), agenttest.NewHost(t, "encryption", agent.HostOptions{Container: e.c})))
	}
	e.h = agenttest.NewHost(t, Name, agent.HostOptions{Container: e.c, Logger: o.log, Metrics: e.reg})
	var h agent.Host = e.h
	if o.encryption != nil {
		h = cipherLookup{Host: e.h, get: o.encryption}
	}
	ctx := context.Background()
	must(t, e.p.Initialize(ctx, h))
	must(t, e.p.Start(ctx))
	t.Cleanup(func() { _ = agenttest.Stop(context.Background(), e.h, e.p) })
	return e
}

// cipherLookup is a Host whose encryption service is what get returns.
type cipherLookup struct {
	agent.Host
	get func() (any, error)
}

func (c cipherLookup) Get(ctx context.Context, name string) (any, error) {
	if name == store.CipherService {
		return c.get()
	}
	return c.Host.Get(ctx, name)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, agenttest.Stop(ctx, e.h, e.p))
}

// waitStored polls until n records are stored.
func (e *env) waitStored(t *testing.T, n int) {
	t.Helper()
	var got float64
	if !agenttest.Within(10*time.Second, func() bool {
		got = testutil.ToFloat64(e.p.m.records.WithLabelValues("stored"))
		return int(got) >= n
	}) {
		t.Fatalf("stored %v records, want %d", got, n)
	}
}

func protoRecord(t *testing.T, level, source, msg string, at time.Time) bus.Message {
	m, err := bus.NewProto(&busv1.LogRecord{Time: timestamppb.New(at), Level: level, Source: source, Message: msg, Attributes: map[string]string{"k": "v"}})
	must(t, err)
	return m
}

func (e *env) get(t *testing.T, query string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	httpHandler{e.p}.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/admin/logs?"+query, nil))
	var out map[string]any
	must(t, json.Unmarshal(rec.Body.Bytes(), &out))
	return rec.Code, out
}

func TestStoresAndQueries(t *testing.T) {
	e := start(t, opts{})
	pub := e.bus.Client("ext", bus.AllowAll)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	must(t, pub.Publish(ctx, "logs.info.gpu_probe", protoRecord(t, "info", "gpu_probe", "loaded model", base)))
	must(t, pub.Publish(ctx, "logs.error.gpu_probe", protoRecord(t, "error", "gpu_probe", "out of memory", base.Add(time.Minute))))
	must(t, pub.Publish(ctx, "logs.warn.other", bus.Message{ContentType: "application/json", Payload: []byte(`{"msg":"slow","attributes":{"ms":"900"}}`)}))
	must(t, pub.Publish(ctx, "logs.debug.plain", bus.Message{ContentType: "text/plain", Payload: []byte("just text")}))
	must(t, pub.Publish(ctx, "logs.info.bad", bus.Message{ContentType: "application/json", Payload: []byte(`{not json`)}))
	e.waitStored(t, 4)
	if got := testutil.ToFloat64(e.p.m.records.WithLabelValues("malformed")); got != 1 {
		t.Errorf("malformed = %v, want 1", got)
	}

	for _, tc := range []struct {
		name  string
		query string
		want  []string // messages, newest first
	}{
		{"all", "", []string{"just text", "slow", "out of memory", "loaded model"}},
		{"source", "source=gpu_probe", []string{"out of memory", "loaded model"}},
		{"min level warn", "level=warn", []string{"slow", "out of memory"}},
		{"level alias", "level=WARNING", []string{"slow", "out of memory"}},
		{"since time", "since=" + url.QueryEscape(base.Add(30*time.Second).Format(time.RFC3339)) + "&source=gpu_probe", []string{"out of memory"}},
		{"until time", "until=" + url.QueryEscape(base.Add(30*time.Second).Format(time.RFC3339)), []string{"loaded model"}},
		{"since duration", "since=10m", []string{"just text", "slow"}},
		{"limit", "limit=1", []string{"just text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.get(t, tc.query)
			if code != http.StatusOK {
				t.Fatalf("status %d: %v", code, out)
			}
			var got []string
			for _, l := range out["logs"].([]any) {
				got = append(got, l.(map[string]any)["message"].(string))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ query, want string }{
		{"level=loud", `level "loud"`},
		{"since=yesterday", `since "yesterday"`},
		{"until=-5m", `until "-5m"`},
		{"limit=0", `limit "0"`},
		{"limit=5000", `limit "5000"`},
		{"source=a%20b", `source "a b"`},
		{"sauce=x", `unknown parameter "sauce"`},
	} {
		t.Run("bad "+tc.query, func(t *testing.T) {
			code, out := e.get(t, tc.query)
			if code != http.StatusBadRequest || !strings.Contains(out["error"].(string), tc.want) {
				t.Fatalf("status %d, body %v; want 400 with %q", code, out, tc.want)
			}
		})
	}
}

func TestEncryptedAtRestAndTamper(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k1")
	must(t, os.WriteFile(key, bytes.Repeat([]byte{9}, encryption.KeySize), 0o600))
	e := start(t, opts{cipher: "active_key: k1\nkeys:\n  - {id: k1, file: " + key + "}\n"})
	pub := e.bus.Client("ext", bus.AllowAll)
	must(t, pub.Publish(context.Background(), "logs.info.secret", protoRecord(t, "info", "secret", "the password is hunter2", time.Now())))
	e.waitStored(t, 1)
	var (
		sealed bool
		raw    []byte
	)
	must(t, e.p.DB().QueryRow(`SELECT sealed, body FROM logs`).Scan(&sealed, &raw))
	if !sealed || bytes.Contains(raw, []byte("hunter2")) {
		t.Fatalf("record stored in clear: sealed=%v body=%q", sealed, raw)
	}
	if id, _ := encryption.KeyID(raw); id != "k1" {
		t.Fatalf("key id %q in stored record", id)
	}
	entries, err := e.p.Query(context.Background(), Query{Limit: 10})
	must(t, err)
	if len(entries) != 1 || entries[0].Message != "the password is hunter2" || entries[0].Encrypted {
		t.Fatalf("query = %+v", entries)
	}
	// Tamper: flip a byte of the stored ciphertext, and move a record to
	// another source; both must fail to open, not return garbage.
	raw[len(raw)-3] ^= 0xff
	_, err = e.p.DB().Exec(`UPDATE logs SET body = ?`, raw)
	must(t, err)
	entries, _ = e.p.Query(context.Background(), Query{Limit: 10})
	if !entries[0].Encrypted || !strings.Contains(entries[0].Message, "authentication failed") {
		t.Fatalf("tampered record read as %+v", entries[0])
	}
	raw[len(raw)-3] ^= 0xff
	_, err = e.p.DB().Exec(`UPDATE logs SET body = ?, source = 'elsewhere'`, raw)
	must(t, err)
	entries, _ = e.p.Query(context.Background(), Query{Limit: 10})
	if !entries[0].Encrypted {
		t.Fatalf("record moved to another source still opened: %+v", entries[0])
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs.db")
	b := bustest.New()
	e := start(t, opts{path: path, bus: b})
	pub := b.Client("ext", bus.AllowAll)
	must(t, pub.Publish(context.Background(), "logs.info.p", protoRecord(t, "info", "p", "before restart", time.Now())))
	e.waitStored(t, 1)
	e.stop(t)

	e2 := start(t, opts{path: path, bus: b})
	must(t, pub.Publish(context.Background(), "logs.info.p", protoRecord(t, "info", "p", "after restart", time.Now())))
	e2.waitStored(t, 1)
	entries, err := e2.p.Query(context.Background(), Query{Limit: 10})
	must(t, err)
	if len(entries) != 2 || entries[1].Message != "before restart" {
		t.Fatalf("after restart: %+v", entries)
	}
}

func TestAgentLogsArePublishedAndStored(t *testing.T) {
	tap := logtap.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	e := start(t, opts{log: slog.New(tap)})
	slog.New(tap).With("plugin", "ext_manager").Warn("target unreachable", "target", "ollama")
	slog.New(tap).Info("agent started")
	e.waitStored(t, 2)
	var topics []string
	for _, m := range e.bus.Published() {
		topics = append(topics, m.Topic)
	}
	if !strings.Contains(strings.Join(topics, " "), "logs.warn.ext_manager") || !strings.Contains(strings.Join(topics, " "), "logs.info.agent") {
		t.Fatalf("published topics %v", topics)
	}
	entries, _ := e.p.Query(context.Background(), Query{Source: "ext_manager", Limit: 10})
	if len(entries) != 1 || entries[0].Attributes["target"] != "ollama" || entries[0].Level != "warn" {
		t.Fatalf("stored %+v", entries)
	}
}

func TestRetention(t *testing.T) {
	e := start(t, opts{yaml: "retention: {max_age: 1h, max_rows: 3, interval: 1h}\n"})
	pub := e.bus.Client("ext", bus.AllowAll)
	now := time.Now()
	for i, age := range []time.Duration{3 * time.Hour, 2 * time.Hour, 30 * time.Minute, 20 * time.Minute, 10 * time.Minute, time.Minute} {
		must(t, pub.Publish(context.Background(), "logs.info.r", protoRecord(t, "info", "r", string(rune('a'+i)), now.Add(-age))))
	}
	e.waitStored(t, 6)
	n, err := e.p.db.Prune(context.Background(), storeRetention(e.p.cfg), now)
	must(t, err)
	if n != 3 {
		t.Fatalf("pruned %d, want 3", n)
	}
	entries, _ := e.p.Query(context.Background(), Query{Limit: 10})
	if len(entries) != 3 || entries[2].Message != "d" {
		t.Fatalf("kept %+v", entries)
	}
}

func TestInvalidConfigs(t *testing.T) {
	p := agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-encrypt.yaml":   `encrypt: want auto, required or off, got "always"`,
		"invalid-subscribe.yaml": `subscribe: entry 0`,
		"invalid-batch.yaml":     "batch_size: must be between 1 and 100000",
		"invalid-retention.yaml": "retention.interval: must be positive",
	})
	if deps := p.Metadata().Dependencies; len(deps) != 1 || deps[0] != bus.ServiceName {
		t.Fatalf("dependencies %v", deps)
	}
	s, _ := agent.NewSection("encrypt: required\n")
	p, _ = Factory(s)
	if deps := p.Metadata().Dependencies; len(deps) != 2 || deps[1] != store.CipherService {
		t.Fatalf("required encryption: dependencies %v", deps)
	}
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	n := 0
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		n++
		s, err := agent.NewSection("path: " + filepath.Join(dir, "c", string(rune('a'+n)), "logs.db") + "\n")
		must(t, err)
		p, err := Factory(s)
		must(t, err)
		return p
	}, func(t *testing.T, c *agent.Container) {
		must(t, c.Provide(bus.ServiceName, bus.Provider(bustest.New())))
	})
}

func TestRelativePathBesideConfig(t *testing.T) {
	for _, tc := range []struct{ file, path, want string }{
		{"/etc/vitals/core.yaml", "data/logs.db", "/etc/vitals/data/logs.db"},
		{"/etc/vitals/core.yaml", "/var/lib/vitals/logs.db", "/var/lib/vitals/logs.db"},
		{"core.yaml", "data/logs.db", "data/logs.db"},
	} {
		s, err := agent.ParseSection(tc.file, []byte("path: "+tc.path+"\n"))
		must(t, err)
		cfg, err := decode(s)
		must(t, err)
		if cfg.Path != tc.want {
			t.Errorf("%s + %s = %s, want %s", tc.file, tc.path, cfg.Path, tc.want)
		}
	}
}

// encrypt: auto with an encryption service that failed stores plaintext,
// and says so: one warning and a count of the records. With no encryption
// plugin at all, plaintext is what was asked for and nothing is said.
func TestAutoEncryptFallbackWarnedAndCounted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		factory func() (any, error)
		want    float64
	}{
		{"failed", func() (any, error) {
			return nil, errors.New(`service is failed: plugin "encryption": key file unreadable`)
		}, 2},
		{"not a cipher", func() (any, error) { return "oops", nil }, 2},
		{"not configured", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			e := start(t, opts{encryption: tc.factory, log: slog.New(slog.NewTextHandler(&logs, nil))})
			pub := e.bus.Client("ext", bus.AllowAll)
			for i := range 2 {
				must(t, pub.Publish(context.Background(), "logs.info.app", protoRecord(t, "info", "app", fmt.Sprint("line ", i), time.Now())))
				e.waitStored(t, i+1) // one batch each: the warning must come once, not per batch
			}
			if got := testutil.ToFloat64(e.p.m.fallback); got != tc.want {
				t.Errorf("vitals_log_consumer_plaintext_fallback_total = %v, want %v", got, tc.want)
			}
			e.stop(t)
			warned := strings.Count(logs.String(), "storing log records in plaintext")
			if want := int(min(tc.want, 1)); warned != want {
				t.Errorf("%d plaintext warnings, want %d; logs:\n%s", warned, want, logs.String())
			}
		})
	}
}

// TestEveryProblemReported: one run names every bad value of the section.
func TestEveryProblemReported(t *testing.T) {
	s, err := agent.NewSection("path: x.db\nencrypt: maybe\nbatch_size: 0\nqueue: 0\n")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Factory(s)
	for _, want := range []string{`section.encrypt: want auto, required or off, got "maybe"`, "section.batch_size: must be between", "section.queue: must be between"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}
