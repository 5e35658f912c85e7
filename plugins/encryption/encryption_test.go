package encryption

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/exporters/audit"
	"github.com/vitals-dev/vitals/exporters/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func section(t *testing.T, y string) agent.Section {
	t.Helper()
	s, err := agent.NewSection(y)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTripAndTamper(t *testing.T) {
	ring, err := NewKeyring("k1", map[string][]byte{"k1": key(1)})
	if err != nil {
		t.Fatal(err)
	}
	msg, aad := []byte("a log record"), []byte("logs:42")
	ct, err := ring.Seal(msg, aad)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := KeyID(ct); id != "k1" {
		t.Fatalf("key id %q", id)
	}
	if bytes.Contains(ct, msg) {
		t.Fatal("ciphertext contains the plaintext")
	}
	pt, err := ring.Open(ct, aad)
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	ct2, _ := ring.Seal(msg, aad)
	if bytes.Equal(ct, ct2) {
		t.Fatal("two seals gave the same ciphertext (nonce reuse)")
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		aad    []byte
		want   error
	}{
		{"flip body byte", func(b []byte) []byte { b[len(b)-20] ^= 1; return b }, aad, ErrAuth},
		{"flip tag byte", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, aad, ErrAuth},
		{"flip nonce byte", func(b []byte) []byte { b[5] ^= 1; return b }, aad, ErrAuth},
		{"other aad", func(b []byte) []byte { return b }, []byte("logs:43"), ErrAuth},
		{"truncated", func(b []byte) []byte { return b[:10] }, aad, ErrMalformed},
		{"empty", func(b []byte) []byte { return nil }, aad, ErrMalformed},
		{"bad format", func(b []byte) []byte { b[0] = 9; return b }, aad, ErrMalformed},
		{"renamed key id", func(b []byte) []byte { b[3] = '2'; return b }, aad, ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.mutate(append([]byte(nil), ct...))
			if _, err := ring.Open(c, tc.aad); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestKeyMaterialFormats(t *testing.T) {
	k := key(7)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"raw", k, true},
		{"hex", []byte(hex.EncodeToString(k) + "\n"), true},
		{"base64", []byte(base64.StdEncoding.EncodeToString(k)), true},
		{"base64url raw", []byte(base64.RawURLEncoding.EncodeToString(k)), true},
		{"short", []byte("abc"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			m, err := KeyConfig{ID: "x", File: p}.material(agent.Secrets{})
			if tc.ok != (err == nil) || (tc.ok && !bytes.Equal(m, k)) {
				t.Fatalf("material = %x, %v", m, err)
			}
		})
	}
	t.Run("raw, every byte white space", func(t *testing.T) {
		ws := bytes.Repeat([]byte{'\t'}, KeySize)
		p := filepath.Join(dir, "tabs")
		if err := os.WriteFile(p, ws, 0o600); err != nil {
			t.Fatal(err)
		}
		if m, err := (KeyConfig{ID: "x", File: p}).material(agent.Secrets{}); err != nil || !bytes.Equal(m, ws) {
			t.Fatalf("material = %x, %v; want the raw key", m, err)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		p := filepath.Join(dir, "empty")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := (KeyConfig{ID: "x", File: p}).material(agent.Secrets{}); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Fatalf("err = %v, want one saying the file is empty", err)
		}
	})
	t.Run("not a regular file", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := (KeyConfig{ID: "x", File: "/dev/zero"}).material(agent.Secrets{}); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("err = %v, want a refusal", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reading /dev/zero as a key did not stop")
		}
	})
	t.Run("env unset", func(t *testing.T) {
		if _, err := (KeyConfig{ID: "x", Env: "VITALS_TEST_UNSET_KEY"}).material(agent.Secrets{}); err == nil || !strings.Contains(err.Error(), "VITALS_TEST_UNSET_KEY") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestInvalidConfigs(t *testing.T) {
	agenttest.ConfigFiles(t, Factory, map[string]string{
		"invalid-no-keys.yaml":      "keys: at least one key is needed",
		"invalid-both-sources.yaml": "keys[0]: set exactly one of file and env",
		"invalid-active.yaml":       `active_key: no key with id "nope"`,
		"invalid-duplicate.yaml":    `keys[1].id: duplicate key id "k1"`,
		"invalid-tls.yaml":          "tls: set both cert_file and key_file",
		"invalid-unknown-key.yaml":  "algorithm",
	})
}

func TestSampleConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := agent.ParseSection("sample.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Factory(s); err != nil {
		t.Fatal(err)
	}
}

// start runs the plugin through Initialize and Start on a fresh container.
func start(t *testing.T, y string) (*Plugin, *agent.PluginHost, *agent.Container, *prometheus.Registry) {
	t.Helper()
	p, err := Factory(section(t, y))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := agenttest.NewContainer(t)
	h := agenttest.NewHost(t, Name, agent.HostOptions{Container: c, Metrics: reg})
	ctx := context.Background()
	if err := p.Initialize(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agenttest.Stop(ctx, h, p) })
	return p.(*Plugin), h, c, reg
}

func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyRotationByReload(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := writeKey(t, dir, "k1"), writeKey(t, dir, "k2")
	p, h, c, reg := start(t, "keys:\n  - {id: k1, file: "+k1+"}\n")
	svc, err := agent.Require[*Service](context.Background(), h, store.CipherService)
	if err != nil {
		t.Fatal(err)
	}
	old, err := svc.Seal([]byte("old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Key rotations go to the audit recorder while one runs.
	db, err := store.Open(ctx, filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.New(ctx, db, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lg.Start()
	t.Cleanup(func() { _ = lg.Close(context.Background()); _ = db.Close() })
	if err := agenttest.NewHost(t, "security", agent.HostOptions{Container: c}).Provide(audit.ServiceName, lg); err != nil {
		t.Fatal(err)
	}
	// Add k2 and make it active: new records use k2, old ones still open.
	if err := p.Reload(ctx, section(t, "active_key: k2\nkeys:\n  - {id: k1, file: "+k1+"}\n  - {id: k2, file: "+k2+"}\n")); err != nil {
		t.Fatal(err)
	}
	if svc.KeyID() != "k2" {
		t.Fatalf("active key %q after rotation", svc.KeyID())
	}
	fresh, _ := svc.Seal([]byte("new"), nil)
	if id, _ := KeyID(fresh); id != "k2" {
		t.Fatalf("new record sealed with %q", id)
	}
	for _, ct := range [][]byte{old, fresh} {
		if _, err := svc.Open(ct, nil); err != nil {
			t.Fatalf("open after rotation: %v", err)
		}
	}
	// A reload with an unreadable key is rejected and keeps the ring.
	if err := p.Reload(ctx, section(t, "keys:\n  - {id: k3, file: "+filepath.Join(dir, "missing")+"}\n")); err == nil {
		t.Fatal("reload with a missing key file succeeded")
	}
	if svc.KeyID() != "k2" {
		t.Fatal("a rejected reload changed the ring")
	}
	// Retiring k1 makes its records unreadable, with a clear error.
	if err := p.Reload(ctx, section(t, "keys:\n  - {id: k2, file: "+k2+"}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Open(old, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("open with retired key: %v", err)
	}
	if got := testutil.ToFloat64(p.ops.WithLabelValues("open", "error")); got != 1 {
		t.Fatalf("open errors counted %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "vitals_encryption_operations_total"); n == 0 {
		t.Fatal("metrics not registered")
	}
	_ = agenttest.Stop(ctx, h, p)
	if n, _ := testutil.GatherAndCount(reg, "vitals_encryption_operations_total"); n != 0 {
		t.Fatal("metrics still registered after Stop")
	}
	// Two reloads took, one was rejected: two records, the active key
	// as their target.
	var recs []audit.Record
	agenttest.Eventually(t, 5*time.Second, "key rotations audited", func() bool {
		recs, err = lg.Query(ctx, audit.Filter{Action: audit.ActionKeysReload})
		return err == nil && len(recs) >= 2
	})
	if len(recs) != 2 || recs[0].Target != "k2" || recs[1].Target != "k2" {
		t.Errorf("audit records %+v, want two reloads of active key k2", recs)
	}
}

func TestConformance(t *testing.T) {
	k := writeKey(t, t.TempDir(), "k")
	agenttest.Conformance(t, func(t *testing.T) agent.Plugin {
		p, err := Factory(section(t, "keys:\n  - {id: k1, file: "+k+"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}, nil)
}
