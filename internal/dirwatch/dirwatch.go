package dirwatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options tunes Watch.
type Options struct {
	// Settle is how long events must stop before OnChange runs (default 100ms).
	Settle time.Duration
	// Retry is how often a missing directory is looked for (default 5s).
	Retry time.Duration
	// Logger receives watch errors; nil means none.
	Logger *slog.Logger
}

// Watch watches dir until ctx ends. It calls onChange once it watches the
// directory (and again whenever the directory reappears), then after every
// settled burst of changes in it; onChange runs on Watch's goroutine, one
// call at a time. ready, if not nil, is closed once the first call has
// returned or the directory was found missing.
func Watch(ctx context.Context, dir string, o Options, onChange func(), ready chan<- struct{}) {
	if o.Settle <= 0 {
		o.Settle = 100 * time.Millisecond
	}
	if o.Retry <= 0 {
		o.Retry = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	signalReady := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
	}
	defer signalReady()

	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error("directory watch unavailable", "dir", dir, "err", err)
		return
	}
	defer w.Close()

	watching := w.Add(dir) == nil
	if watching {
		onChange()
	} else {
		log.Info("directory does not exist yet; looking for it periodically", "dir", dir, "every", o.Retry)
	}
	signalReady()

	retry := time.NewTicker(o.Retry)
	defer retry.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if !watching && w.Add(dir) == nil {
				watching = true
				log.Info("directory appeared; watching it", "dir", dir)
				onChange()
			}
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Name == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false
			}
			settle.Reset(o.Settle)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn("directory watch error", "dir", dir, "err", err)
		case <-settle.C:
			onChange()
		}
	}
}
