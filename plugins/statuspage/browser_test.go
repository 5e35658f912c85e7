package statuspage

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/e2e/e2etest"
	"github.com/vitals-dev/vitals/plugins/demoai"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
)

const browserConfig = `
core:
  log: {level: warn}
  lifecycle: {watch_config: false}
  api_gateway:
    listen: 127.0.0.1:0
    plugins:
      extmanager:
        directory: ""
        bus: {enabled: false}
        health: {interval: 1s, timeout: 1s, synthetic: true}
      demo_llm: {}
      demo_ollama: {}
      status_page: {refresh: 2s}
`

// runAgent runs an agent with the ExtManager, two demo AI plugins and the
// status page on a loopback port and returns its base URL.
func runAgent(t *testing.T) string {
	t.Helper()
	reg := agent.NewRegistry()
	for name, f := range map[string]agent.Factory{
		extmanager.Name: extmanager.Factory,
		Name:            Factory,
		"demo_llm":      demoai.Factory("demo_llm", probes.KindLlamaCpp),
		"demo_ollama":   demoai.Factory("demo_ollama", probes.KindOllama),
	} {
		if err := reg.Register(name, f); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	cfg, err := agent.Parse(ctx, "browser test", []byte(browserConfig), reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a, err := agent.New(agent.Options{
		Registry: reg, Config: cfg, Listener: ln, Metrics: prometheus.NewRegistry(), Version: "test",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop")
		}
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("agent exited: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not start")
	}
	return "http://" + ln.Addr().String()
}

// chromium runs headless Chromium once with args and returns its stdout.
func chromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestBrowser renders the status page of a running agent in headless
// Chromium: the DOM must list the AI plugins with a health state and the
// host plugins, and the screenshot must be a real picture. Set
// VITALS_SCREENSHOT=FILE to keep the screenshot.
func TestBrowser(t *testing.T) {
	bin := e2etest.Tool(t, "chromium")
	base := runAgent(t)

	// Wait until the health engine has judged both demo plugins, so the
	// page shows states rather than unknown.
	err := e2etest.Poll(t.Context(), 30*time.Second, 100*time.Millisecond, "AI plugins checked", func(ctx context.Context) error {
		b, err := e2etest.Get(ctx, base+"/")
		if err != nil {
			return err
		}
		// The demo Ollama holds no model until a request loads one, and
		// no probe loads one: it is cold, or healthy once something did.
		for id, states := range map[string][]string{"demo_llm": {"healthy"}, "demo_ollama": {"healthy", "cold"}} {
			if !slices.ContainsFunc(states, func(st string) bool {
				return strings.Contains(string(b), `data-plugin="`+id+`" data-state="`+st+`"`)
			}) {
				return &pageError{id}
			}
		}
		// The strip is the engine's history, which a check reaches after
		// the catalog's state.
		if !strings.Contains(string(b), `<span class="healthy" title=`) {
			return &pageError{"the history strip"}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	dom := string(chromium(t, bin, "--dump-dom", base+"/"))
	for _, want := range []string{
		`data-plugin="demo_llm"`, `data-plugin="demo_ollama"`, `data-state="healthy"`,
		`data-host-plugin="extmanager"`, `data-host-plugin="status_page"`, `<span class="cap">chat</span>`,
		`<span class="healthy" title=`, // a check in the strip, from the engine's history
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %s", want)
		}
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	if keep := os.Getenv("VITALS_SCREENSHOT"); keep != "" {
		shot = keep
	}
	chromium(t, bin, "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars", base+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1280x900", b)
	}
	// A rendered page has many colours: the dark header, white tables and
	// the green badges; a blank or error page has a few.
	colours := map[[3]uint32]bool{}
	green := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 12, g >> 12, b >> 12}] = true
			if g>>8 > 130 && r>>8 < 80 && b>>8 < 100 { // the healthy badge colour, #2e9e44
				green++
			}
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d colours: blank page?", len(colours))
	}
	if green == 0 {
		t.Error("screenshot shows no healthy badge")
	}
	t.Logf("screenshot %s: %d colours, %d green samples", shot, len(colours), green)
}

type pageError struct{ id string }

func (e *pageError) Error() string { return "page does not show " + e.id + " healthy yet" }
