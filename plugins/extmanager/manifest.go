package extmanager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/internal/dirwatch"
)

// ParseManifest reads one drop-in manifest: a YAML mapping with the keys of
// a config target. The id defaults to the file's name without .yaml; the
// files its http_config names are relative to the manifest's directory.
// Errors name the file, line and key.
func ParseManifest(path string, data []byte) (catalog.Spec, error) {
	s, err := agent.ParseSection(path, data)
	if err != nil {
		return catalog.Spec{}, err
	}
	if s.Empty() {
		return catalog.Spec{}, fmt.Errorf("%s: empty manifest: want at least an endpoint", path)
	}
	var t Target
	if err := s.Decode(&t); err != nil {
		return catalog.Spec{}, err
	}
	if t.ID == "" {
		t.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	spec, err := t.spec(catalog.SourceDirectory)
	if err != nil {
		return catalog.Spec{}, s.Place("", err)
	}
	// Its files (CA, certificate, key, token) are beside the manifest.
	if err := checkHTTPConfig(t.HTTPConfig, filepath.Dir(path)); err != nil {
		return catalog.Spec{}, s.Errorf("http_config", "%v", err)
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
	catalog *catalog.Catalog
	log     *slog.Logger
	// onBad counts bad manifests.
	onBad func(path string, err error)
	// owns, when set, says which ids this agent's shard checks; the
	// manifests of other ids are not registered. onShard hears how many
	// manifests were seen and owned in each scan.
	owns    func(id string) bool
	onShard func(seen, owned int)
	// Bounds of one scan: directory entries listed, manifests read and
	// their bytes in all.
	maxEntries, maxManifests int
	maxBytes                 int64

	last map[string]catalog.Spec // path -> last good spec
}

// Bounds of a manifest directory, per scan.
const (
	// MaxManifests is how many manifests one directory may hold; those
	// past it, by file name, are reported and not read.
	MaxManifests = 1000
	// MaxManifestDirBytes bounds the bytes of all manifests read at once.
	MaxManifestDirBytes = 1 << 20
	// maxDirEntries bounds the entries listed; a directory with more is
	// reported and changes nothing.
	maxDirEntries = 10 * MaxManifests
)

func newDirSource(dir string, c *catalog.Catalog, log *slog.Logger, onBad func(string, error)) *dirSource {
	return &dirSource{dir: dir, catalog: c, log: log, onBad: onBad, last: map[string]catalog.Spec{},
		maxEntries: maxDirEntries, maxManifests: MaxManifests, maxBytes: MaxManifestDirBytes}
}

// list returns the manifests of the directory, sorted, reading at most
// maxEntries entries.
func (d *dirSource) list() ([]string, error) {
	// O_NONBLOCK: a named pipe in the directory's place must not block.
	f, err := os.OpenFile(d.dir, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return nil, err
	} else if !info.IsDir() {
		return nil, fmt.Errorf("not a directory")
	}
	entries, err := f.ReadDir(d.maxEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(entries) > d.maxEntries {
		return nil, fmt.Errorf("more than %d entries; nothing changed until some are removed", d.maxEntries)
	}
	var paths []string
	for _, e := range entries {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		paths = append(paths, filepath.Join(d.dir, e.Name()))
	}
	sort.Strings(paths)
	return paths, nil
}

// scan reads every manifest and reconciles the catalog. A manifest that
// cannot be read or parsed keeps what it described before. Two manifests
// declaring one id are a conflict: the one that declared it first keeps it
// (or, at start, the first by file name) and the other is reported, so
// removing either leaves the plugin the other declares.
func (d *dirSource) scan() {
	paths, err := d.list()
	if errors.Is(err, os.ErrNotExist) {
		d.log.Warn("manifest directory unreadable", "dir", d.dir, "err", err)
		return
	} else if err != nil {
		d.bad(d.dir, fmt.Errorf("manifest directory %s: %w", d.dir, err))
		return
	}

	// What each manifest declares now: its new spec, or the last good one.
	want := map[string]catalog.Spec{}
	fresh := map[string]bool{} // want[path] was read in this scan
	var read int64
	for i, path := range paths {
		var data []byte
		var err error
		switch {
		case i >= d.maxManifests:
			err = fmt.Errorf("%s: not read: the directory holds more than %d manifests", path, d.maxManifests)
		case read > d.maxBytes:
			err = fmt.Errorf("%s: not read: the manifests before it hold more than %d bytes, the most read at once", path, d.maxBytes)
		default:
			data, err = agent.ReadFile(path, agent.MaxManifestBytes)
			if read += int64(len(data)); read > d.maxBytes {
				data, err = nil, fmt.Errorf("%s: not read: with it the manifests hold more than %d bytes, the most read at once", path, d.maxBytes)
			}
		}
		if err == nil {
			var spec catalog.Spec
			if spec, err = ParseManifest(path, data); err == nil {
				want[path], fresh[path] = spec, true
				continue
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since ReadDir
		}
		d.bad(path, err)
		if old, ok := d.last[path]; ok {
			want[path] = old
		}
	}

	// One manifest per id: the one that had it keeps it.
	owner := map[string]string{} // id -> path
	for _, path := range paths {
		spec, ok := want[path]
		if !ok {
			continue
		}
		if old, had := d.last[path]; had && old.ID == spec.ID {
			owner[spec.ID] = path
		}
	}
	for _, path := range paths {
		if spec, ok := want[path]; ok {
			if _, taken := owner[spec.ID]; !taken {
				owner[spec.ID] = path
			}
		}
	}
	next := map[string]catalog.Spec{}
	for _, path := range paths {
		spec, ok := want[path]
		if !ok {
			continue
		}
		if o := owner[spec.ID]; o != path {
			if fresh[path] {
				d.bad(path, fmt.Errorf("%s: id %q is already declared by %s; each manifest needs its own id", path, spec.ID, o))
			}
			continue
		}
		next[path] = spec
	}

	seen := len(next)
	for path, spec := range next {
		if d.owns != nil && !d.owns(spec.ID) {
			delete(next, path)
		}
	}
	if d.onShard != nil {
		d.onShard(seen, len(next))
	}
	kept := map[string]bool{} // ids registered after this scan
	for _, spec := range next {
		kept[spec.ID] = true
	}
	for path, old := range d.last {
		if !kept[old.ID] {
			reason := "manifest " + path + " removed"
			if spec, ok := next[path]; ok {
				reason = "manifest " + path + " now names " + spec.ID
			} else if owner[old.ID] != "" {
				reason = "another shard checks it"
			}
			d.catalog.Remove(old.ID, catalog.SourceDirectory, reason)
		}
	}
	prev := d.last
	d.last = map[string]catalog.Spec{}
	for _, path := range paths {
		spec, ok := next[path]
		if !ok {
			continue
		}
		if err := d.catalog.Upsert(spec); err != nil {
			d.bad(path, err)
			if old, ok := prev[path]; ok && old.ID == spec.ID {
				d.last[path] = old
			}
			continue
		}
		d.last[path] = spec
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
			d.catalog.Remove(spec.ID, catalog.SourceDirectory, "directory source stopped")
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
