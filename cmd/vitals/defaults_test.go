package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// busSection is a message_bus section on sockets of its own.
func busSection(dir, extra string) string {
	return fmt.Sprintf("      message_bus:\n        publish_address: ipc://%s\n        subscribe_address: ipc://%s\n%s",
		filepath.Join(dir, "pub.sock"), filepath.Join(dir, "sub.sock"), extra)
}

func writeConfig(t *testing.T, dir, plugins string) string {
	t.Helper()
	path := filepath.Join(dir, "core.yaml")
	text := "core:\n  api_gateway:\n    listen: 127.0.0.1:0\n    plugins:\n" + plugins
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBuiltInDefaultsWorkTogether starts the built-in bus users with the
// broker's defaults (no permissions: in config): each runs.
func TestBuiltInDefaultsWorkTogether(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, busSection(dir, "")+
		"      extmanager:\n        directory: \"\"\n"+
		"      routing: {}\n"+
		"      log_consumer:\n        path: "+filepath.Join(dir, "logs.db")+"\n        encrypt: \"off\"\n"+
		"      encryption: {enabled: false}\n")
	var stdout, stderr strings.Builder
	if code := run([]string{"check-config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("check-config exit %d: %s", code, stderr.String())
	}

	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadFile(context.Background(), path, reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := agent.NewManager(agent.ManagerOptions{Registry: reg, Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	for _, name := range []string{"message_bus", "extmanager", "routing", "log_consumer"} {
		if st, _ := m.Plugin(ctx, name); st.State != agent.StateRunning {
			t.Errorf("%s is %s (%s), want running", name, st.State, st.LastError)
		}
	}
}

// TestCheckConfigRefusesPermissionsAPluginCannotStartWith: an operator's
// permissions entry that leaves out what a plugin needs at start fails
// check-config, naming the entry and what is missing.
func TestCheckConfigRefusesPermissionsAPluginCannotStartWith(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, busSection(dir,
		"        permissions:\n          extmanager: {publish: [\"extmanager.\"], subscribe: [\"extmanager.\"]}\n"+
			"          log_consumer: {subscribe: [\"logs.error.\"]}\n")+
		"      extmanager:\n        directory: \"\"\n"+
		"      log_consumer:\n        path: "+filepath.Join(dir, "logs.db")+"\n        encrypt: \"off\"\n")
	var stdout, stderr strings.Builder
	if code := run([]string{"check-config", path}, &stdout, &stderr); code != 1 {
		t.Fatalf("check-config exit %d, want 1; stdout %s", code, stdout.String())
	}
	for _, want := range []string{
		path + `:9:11: core.api_gateway.plugins.message_bus.permissions.extmanager: extmanager cannot start without permission to subscribe "plugin."`,
		`message_bus.permissions.log_consumer: log_consumer cannot start without permission to subscribe "logs."`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
}
