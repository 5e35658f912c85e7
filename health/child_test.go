package health_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

const childEnv = "VITALS_HEALTH_HISTORY_CHILD"

// childMain runs the agent side of TestHistorySurvivesSIGKILL when the
// test binary is re-executed with childEnv set to a store path: an engine
// checking 20 plugins every few milliseconds, with the SQLite history,
// printing "ack <plugin> <seq>" for every check row and "ackt <plugin>
// <unix-nano>" for every transition row once its transaction committed.
// It runs until killed.
func childMain() bool {
	path := os.Getenv(childEnv)
	if path == "" {
		return false
	}
	if err := runChild(path); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
	return true
}

func runChild(path string) error {
	ctx := context.Background()
	db, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	cfg := fastConfig()
	cfg.Synthetic = false
	hist, err := health.OpenHistory(ctx, db, cfg.History, nil)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	hist.OnPersisted(func(v any) {
		switch r := v.(type) {
		case health.CheckRecord:
			fmt.Fprintf(out, "ack %s %d\n", r.Plugin, r.Seq)
		case health.Transition:
			fmt.Fprintf(out, "ackt %s %d\n", r.Plugin, r.Time.UnixNano())
		}
		if hist.Queued() == 0 {
			_ = out.Flush()
		}
	})
	sim, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI, Seed: 3})
	if err != nil {
		return err
	}
	sim.SetErrorRate(0.5) // transitions too
	srv := httptest.NewServer(sim)
	e := health.New(health.Options{Config: cfg, History: hist, Client: &http.Client{}})
	for i := range 20 {
		e.Upsert(target(fmt.Sprintf("p%02d", i), probes.KindOpenAI, srv.URL))
	}
	fmt.Fprintln(out, "ready") // before the writer starts: out is the writer's from here on
	_ = out.Flush()
	e.Start()
	select {} // until killed
}

func TestHistorySurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	path := filepath.Join(t.TempDir(), "health.db")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A line counts only with its newline: the kill can cut the last
	// write short, and "ack p05 12" cut from "ack p05 1234" is not an
	// acknowledgement.
	rd := bufio.NewReader(stdout)
	line := func() (string, bool) {
		l, err := rd.ReadString('\n')
		return strings.TrimSuffix(l, "\n"), err == nil
	}
	if l, ok := line(); !ok || l != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child not ready: %q", l)
	}
	checks, trans := map[string]bool{}, map[string]bool{}
	// read records acknowledgements until the output ends or enough says so.
	read := func(enough func() bool) {
		for !enough() {
			l, ok := line()
			if !ok {
				return
			}
			if f := strings.Fields(l); len(f) == 3 && f[0] == "ack" {
				checks[f[1]+" "+f[2]] = true
			} else if len(f) == 3 && f[0] == "ackt" {
				trans[f[1]+" "+f[2]] = true
			}
		}
	}
	read(func() bool { return len(checks) >= 2000 && len(trans) >= 20 })
	// Kill mid-run: writes are in flight. Lines printed before the kill
	// are acknowledged rows; read what is left in the pipe too.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	read(func() bool { return false })
	_ = cmd.Wait()
	if len(checks) < 2000 {
		t.Fatalf("only %d acknowledged checks before the kill", len(checks))
	}

	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT plugin, seq FROM ai_health_checks`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var p string
		var seq int64
		if err := rows.Scan(&p, &seq); err != nil {
			t.Fatal(err)
		}
		stored[p+" "+strconv.FormatInt(seq, 10)] = true
	}
	rows.Close()
	trows, err := db.Query(`SELECT plugin, ts FROM ai_health_transitions`)
	if err != nil {
		t.Fatal(err)
	}
	storedT := map[string]bool{}
	for trows.Next() {
		var p string
		var ts int64
		if err := trows.Scan(&p, &ts); err != nil {
			t.Fatal(err)
		}
		storedT[p+" "+strconv.FormatInt(ts, 10)] = true
	}
	trows.Close()
	lost := 0
	for k := range checks {
		if !stored[k] {
			lost++
		}
	}
	lostT := 0
	for k := range trans {
		if !storedT[k] {
			lostT++
		}
	}
	if lost > 0 || lostT > 0 {
		t.Errorf("lost %d of %d acknowledged checks and %d of %d transitions", lost, len(checks), lostT, len(trans))
	}
	t.Logf("%d acknowledged checks and %d transitions, all found among %d and %d stored rows",
		len(checks), len(trans), len(stored), len(storedT))
}
