package extmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/internal/dirwatch"
)

// ParseManifest reads one drop-in manifest: a YAML mapping with the keys of
// a config target. The id defaults to the file's name without .yaml.
// Errors name the file, line and key.
func ParseManifest(path string, data []byte) (Spec, error) {
	s, err := agent.ParseSection(path, data)
	if err != nil {
		return Spec{}, err
	}
	if s.Empty() {
		return Spec{}, fmt.Errorf("%s: empty manifest: want at least an endpoint", path)
	}
	var t Target
	if err := s.Decode(&t); err != nil {
		return Spec{}, err
	}
	if t.ID == "" {
		t.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	spec, err := t.spec(SourceDirectory)
	if err != nil {
		return Spec{}, sectionError(s, "", err)
	}
	spec.Manifest = path
	return spec, nil
}

// dirSource keeps the catalog's directory plugins equal to the manifests in
// one directory: a new file registers, an edited one updates, a removed one
// deregisters, and a bad one is reported and changes nothing (the plugin it
// described, if any, stays as it was).
type dirSource struct {
	dir     string
	catalog *Catalog
	log     *slog.Logger
	// onBad counts bad manifests.
	onBad func(path string, err error)

	last map[string]Spec // path -> last good spec
}

func newDirSource(dir string, c *Catalog, log *slog.Logger, onBad func(string, error)) *dirSource {
	return &dirSource{dir: dir, catalog: c, log: log, onBad: onBad, last: map[string]Spec{}}
}

// scan reads every manifest and reconciles the catalog.
func (d *dirSource) scan() {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("manifest directory unreadable", "dir", d.dir, "err", err)
		return
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(d.dir, name)
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				delete(seen, path)
				continue
			}
			d.bad(path, err)
			continue
		}
		spec, err := ParseManifest(path, data)
		if err != nil {
			d.bad(path, err)
			continue
		}
		if old, ok := d.last[path]; ok && old.ID != spec.ID {
			d.catalog.Remove(old.ID, SourceDirectory, "manifest "+path+" now names "+spec.ID)
		}
		if err := d.catalog.Upsert(spec); err != nil {
			d.bad(path, err)
			continue
		}
		d.last[path] = spec
	}
	for path, spec := range d.last {
		if !seen[path] {
			d.catalog.Remove(spec.ID, SourceDirectory, "manifest "+path+" removed")
			delete(d.last, path)
		}
	}
}

func (d *dirSource) bad(path string, err error) {
	d.log.Error("bad AI plugin manifest ignored; nothing changed", "file", path, "err", err)
	if d.onBad != nil {
		d.onBad(path, err)
	}
}

// run watches the directory until ctx ends, rescanning after changes
// settle; a directory that does not exist yet is looked for periodically.
// When it returns, the directory's plugins are deregistered.
func (d *dirSource) run(ctx context.Context, ready chan<- struct{}) {
	defer func() {
		for path, spec := range d.last {
			d.catalog.Remove(spec.ID, SourceDirectory, "directory source stopped")
			delete(d.last, path)
		}
	}()
	dirwatch.Watch(ctx, d.dir, dirwatch.Options{Settle: 50 * time.Millisecond, Logger: d.log}, d.scan, ready)
}

func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // editors' swap and temp files
	}
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}
