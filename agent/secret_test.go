package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
)

// A section of a loaded config reads secrets from the environment the
// config was loaded with, not from the process's; files are read with
// ReadFile's bounds; a missing or empty secret names where it was looked
// for.
func TestSectionSecrets(t *testing.T) {
	const name = "VITALS_TEST_SECTION_SECRET"
	t.Setenv(name, "from-the-process")
	env := envconfig.MapLookuper(map[string]string{name: "injected", "VITALS_TEST_BLANK": "  \n"})
	cfg, err := agent.Parse(context.Background(), "core.yaml", []byte("core:\n  api_gateway:\n    plugins:\n      alpha:\n"), testRegistry(), env)
	if err != nil {
		t.Fatal(err)
	}
	loaded := cfg.Plugin("alpha").Section.Secrets()
	if got, err := loaded.Read("", name, 0); err != nil || string(got) != "injected" {
		t.Errorf("loaded section: Read(env %s) = %q, %v; want the injected value", name, got, err)
	}
	if got, err := loaded.Read("", "VITALS_TEST_BLANK", 0); err != nil || string(got) != "  \n" {
		t.Errorf("blank variable: %q, %v; want its value as it is", got, err)
	}
	if _, err := loaded.Read("", "VITALS_TEST_UNSET", 0); err == nil || !strings.Contains(err.Error(), "VITALS_TEST_UNSET is not set") {
		t.Errorf("unset variable: %v", err)
	}
	if got, err := (agent.Section{}).Secrets().Read("", name, 0); err != nil || string(got) != "from-the-process" {
		t.Errorf("section made otherwise: Read(env %s) = %q, %v; want the process's value", name, got, err)
	}

	dir := t.TempDir()
	for file, text := range map[string]string{"key": "k3y\n", "tabs": "\t\t", "empty": "", "big": strings.Repeat("x", 65)} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := loaded.Read(filepath.Join(dir, "key"), name, 64); err != nil || string(got) != "k3y\n" {
		t.Errorf("file: %q, %v; want the file's bytes as they are", got, err)
	}
	if got, err := loaded.Read(filepath.Join(dir, "tabs"), "", 64); err != nil || string(got) != "\t\t" {
		t.Errorf("file of white space: %q, %v; want its bytes (a raw key may be white space)", got, err)
	}
	for file, want := range map[string]string{"empty": "is empty", "big": "limit", "missing": "no such file"} {
		if _, err := loaded.Read(filepath.Join(dir, file), "", 64); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("file %s: %v, want an error naming it and %q", file, err, want)
		}
	}
}
