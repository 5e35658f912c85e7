package docs

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestDependenciesAreDocumented: every direct requirement of go.mod has
// its entry in dependencies.md, and every entry is still a requirement.
func TestDependenciesAreDocumented(t *testing.T) {
	root := e2etest.RepoRoot(t)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("dependencies.md")
	if err != nil {
		t.Fatal(err)
	}
	direct := map[string]bool{}
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(mod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !inBlock:
			continue
		}
		if strings.Contains(line, "// indirect") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 {
			direct[f[0]] = true
		}
	}
	if len(direct) < 10 {
		t.Fatalf("found %d direct requirements in go.mod; the parser no longer reads it", len(direct))
	}
	text := string(doc)
	for path := range direct {
		if !strings.Contains(text, "`"+path+"`") && !strings.Contains(text, "`"+lastParts(path)+"`") {
			t.Errorf("go.mod requires %s directly; docs/dependencies.md does not say why (add a section naming it in backticks)", path)
		}
	}
	// Headings name modules; a module no longer required is a stale entry.
	heading := regexp.MustCompile("(?m)^### `([^`]+)`")
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		if !direct[m[1]] {
			t.Errorf("docs/dependencies.md has a section for %s, which go.mod does not require directly", m[1])
		}
	}
}

// lastParts turns go.opentelemetry.io/otel/sdk/log into otel/sdk/log, the
// short form the OpenTelemetry heading uses.
func lastParts(path string) string {
	if rest, ok := strings.CutPrefix(path, "go.opentelemetry.io/"); ok {
		return rest
	}
	return path
}

// TestLinksResolve: the relative links of the README and of these
// documents name files that exist, and the README links both documents.
func TestLinksResolve(t *testing.T) {
	root := e2etest.RepoRoot(t)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	files := []string{filepath.Join(root, "README.md"), "architecture.md", "dependencies.md", "engines.md"}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links %s: %v", filepath.Base(f), m[1], err)
			}
		}
	}
	readme, _ := os.ReadFile(filepath.Join(root, "README.md"))
	for _, want := range []string{"(docs/architecture.md)", "(docs/dependencies.md)"} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("README.md does not link %s", want)
		}
	}
}

// TestNothingPointsOutsideTheRepository: no file of the repository cites
// the design notes that lived beside it, or a path beside the checkout;
// the repository must stand alone.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	root := e2etest.RepoRoot(t)
	banned := []string{
		"DESIGN" + ".md",
		"DEPENDENCIES" + ".md",
		"../" + "sha" + "red",
		"/work/" + "sha" + "red",
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "vitals-data" {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > 4<<20 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, s := range banned {
			if i := bytes.Index(b, []byte(s)); i >= 0 {
				line := 1 + bytes.Count(b[:i], []byte("\n"))
				t.Errorf("%s:%d names %q, which is not in the repository; point into docs/ instead", rel, line, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImportRule checks the dependency rule of architecture.md on the
// tree: nothing outside cmd/ imports a plugin or a command; plugins/ holds
// one package per plugin, in a folder named after the plugin, and no
// package under plugins/ imports another package under plugins/; probes
// import nothing of ours outside probes/ and internal/; the host imports
// only internal/ and exporters/ of ours; and each library below the
// plugins (bus, catalog, health, discovery, exporters, internal) imports
// only the layers beneath it. Tests may wire plugins together,
// so only the packages' own imports are checked.
func TestImportRule(t *testing.T) {
	// The libraries below the plugins, and what each may import of ours
	// besides itself (architecture.md, "Which package may import which").
	libraryImports := map[string][]string{
		"bus":       {"internal", "proto"},
		"catalog":   {"agent", "health", "probes", "internal"},
		"health":    {"agent", "probes", "exporters/store", "internal"},
		"discovery": {"agent", "internal"},
		"exporters": {"alerts", "internal"},
		"internal":  {"internal", "probes"},
	}
	root := e2etest.RepoRoot(t)
	const module = "github.com/vitals-dev/vitals/"
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	under := func(pkg string, dirs ...string) bool {
		for _, d := range dirs {
			if pkg == d || strings.HasPrefix(pkg, d+"/") {
				return true
			}
		}
		return false
	}
	n, plugins := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		n++
		if under(pkg, "plugins") {
			plugins++
			if strings.Count(pkg, "/") != 1 {
				t.Errorf("%s: plugins/ holds one package per plugin, plugins/<name>; move a library out of plugins/", pkg)
			}
		}
		for _, imp := range f[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			switch {
			case under(pkg, "plugins") && under(dep, "plugins"):
				t.Errorf("%s imports %s: no plugin imports another; move what they share to a library (bus/, catalog/, health/, exporters/...)", pkg, dep)
			case !under(pkg, "cmd", "plugins") && under(dep, "plugins", "cmd"):
				t.Errorf("%s imports %s: nothing outside cmd/ imports a plugin or a command", pkg, dep)
			case under(pkg, "probes") && !under(dep, "probes", "internal"):
				t.Errorf("%s imports %s: probes import nothing of ours outside probes/ and internal/", pkg, dep)
			case pkg == "agent" && !under(dep, "internal", "exporters"):
				t.Errorf("agent imports %s: the host imports only internal/ and exporters/ of ours", dep)
			}
			for lib, allowed := range libraryImports {
				if under(pkg, lib) && !under(dep, append(allowed, lib)...) {
					t.Errorf("%s imports %s: %s/ imports only %s of ours", pkg, dep, lib, strings.Join(allowed, ", "))
				}
			}
		}
	}
	if n < 20 || plugins < 8 {
		t.Fatalf("go list gave %d packages of the module, %d plugins", n, plugins)
	}
}

// TestPluginFolders: each plugin's folder is its name in core.yaml (the
// Name constant) without underscores.
func TestPluginFolders(t *testing.T) {
	root := e2etest.RepoRoot(t)
	nameRE := regexp.MustCompile(`(?m)^const Name = "([a-z][a-z0-9_]*)"`)
	dirs, err := os.ReadDir(filepath.Join(root, "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(root, "plugins", d.Name(), "*.go"))
		var names []string
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range nameRE.FindAllSubmatch(b, -1) {
				names = append(names, string(m[1]))
			}
		}
		switch {
		case len(names) > 1:
			t.Errorf("plugins/%s declares Name %d times: %v", d.Name(), len(names), names)
		case len(names) == 1:
			named++
			if want := strings.ReplaceAll(names[0], "_", ""); d.Name() != want {
				t.Errorf("plugins/%s holds the plugin %q: its folder is plugins/%s", d.Name(), names[0], want)
			}
		}
		// No Name constant: a family of plugins named by config
		// (demoai), checked by nothing here.
	}
	if named < 8 {
		t.Fatalf("found the Name constant of %d plugins; the check no longer reads them", named)
	}
}
